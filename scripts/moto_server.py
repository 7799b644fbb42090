"""Starts moto's server for custody's tests and benchmarks.

This launcher corrects the emulator where it answers differently from AWS,
not the client, then runs moto's own server entry point with the given
arguments:

- moto reports an EBS snapshot block size of 512 bytes, where AWS (and every
  real EBS direct client) uses 524288: each new EBS snapshot gets AWS's
  block size.
- moto's EBS direct API knows only snapshots made through StartSnapshot;
  a snapshot made by EC2 CreateSnapshot answers 500, where AWS serves its
  blocks. Such a snapshot is given the blocks of the snapshot its volume
  was created from (a volume launched from a seeded snapshot reads back as
  that seed), and none when the volume was created empty, which is what
  AWS serves for a volume never written. A snapshot unknown to both
  answers AWS's 404 ResourceNotFoundException rather than a 500.
- moto names the XML root of some S3 answers `<Action>Response`, where AWS
  sends the documented element (`ListPartsResult`,
  `VersioningConfiguration`); strict clients such as the AWS SDK for Rust
  refuse the former. Those answers get AWS's root element.
- moto gives a network interface a private DNS name only in a VPC with DNS
  host names on, then reads it unconditionally when it starts an awsvpc
  ECS task (a 500 for every Fargate task elsewhere). AWS names every
  interface: an interface without one gets the name AWS would give it.
- moto's ECR image digest is a hash of the layer digests; AWS's is the
  SHA-256 of the manifest's bytes, which is what a client checks. And
  moto's Lambda writes an image function's `ResolvedImageUri` by cutting
  the URI at its first `:` (`repo@sha256@sha256:…` for a pinned image);
  AWS gives the repository and the digest of the image the function runs.
"""

import sys

from moto.core.exceptions import JsonRESTError
import hashlib

from moto.awslambda import models as lambda_models
from moto.ebs import models as ebs_models
from moto.ecr import models as ecr_models
from moto.ec2.models import elastic_network_interfaces as eni_models
from moto.ec2.utils import generate_dns_from_ip
from moto.s3.responses import S3Response
from moto.server import main

EBS_BLOCK_SIZE = 524288  # AWS's EBS direct API block size (512 KiB)

_original_init = ebs_models.EBSSnapshot.__init__


def _init_with_aws_block_size(self, *args, **kwargs):
    _original_init(self, *args, **kwargs)
    self.block_size = EBS_BLOCK_SIZE


ebs_models.EBSSnapshot.__init__ = _init_with_aws_block_size


def _ebs_view(backend, snapshot_id):
    """Registers an EC2 snapshot with the EBS direct backend, once."""
    if snapshot_id in backend.snapshots:
        return
    try:
        snapshot = backend.ec2_backend.get_snapshot(snapshot_id)
    except Exception:  # unknown to EC2 as well: moto's own answer stands
        return
    view = ebs_models.EBSSnapshot(account_id=backend.account_id, snapshot=snapshot)
    view.status = "completed"
    source = getattr(snapshot.volume, "snapshot_id", None)
    if source and source != snapshot_id:
        _ebs_view(backend, source)
        if source in backend.snapshots:
            view.blocks = backend.snapshots[source].blocks
    backend.snapshots[snapshot_id] = view


class _SnapshotNotFound(JsonRESTError):
    code = 404

    def __init__(self, snapshot_id):
        super().__init__("ResourceNotFoundException", f"The snapshot '{snapshot_id}' does not exist.")


def _reading_ec2_snapshots(method, *id_args):
    original = getattr(ebs_models.EBSBackend, method)

    def fixed(self, *args, **kwargs):
        ids = [args[i] for i in id_args if i < len(args)]
        ids += [kwargs[k] for k in ("snapshot_id", "first_snapshot_id", "second_snapshot_id") if k in kwargs]
        for snapshot_id in ids:
            _ebs_view(self, snapshot_id)
            if snapshot_id not in self.snapshots:
                raise _SnapshotNotFound(snapshot_id)
        return original(self, *args, **kwargs)

    setattr(ebs_models.EBSBackend, method, fixed)


_reading_ec2_snapshots("get_snapshot_block", 0)
_reading_ec2_snapshots("list_snapshot_blocks", 0)
_reading_ec2_snapshots("list_changed_blocks", 0, 1)


def _with_aws_root(method, wrong, right):
    original = getattr(S3Response, method)

    def fixed(self, *args, **kwargs):
        status, headers, body = original(self, *args, **kwargs)
        swap = [("<" + wrong, "<" + right), ("</" + wrong + ">", "</" + right + ">")]
        for old, new in swap:
            if isinstance(body, bytes):
                body = body.replace(old.encode(), new.encode())
            elif isinstance(body, str):
                body = body.replace(old, new)
        if isinstance(headers, dict):
            headers.pop("Content-Length", None)
            headers.pop("content-length", None)
        return status, headers, body

    setattr(S3Response, method, fixed)


_with_aws_root("list_parts", "ListPartsResponse", "ListPartsResult")
_with_aws_root("get_bucket_versioning", "GetBucketVersioningResponse", "VersioningConfiguration")

def _eni_dns_name(self):
    return self.__dict__.get("private_dns_name") or generate_dns_from_ip(self.private_ip_address)


def _set_eni_dns_name(self, value):
    self.__dict__["private_dns_name"] = value


eni_models.NetworkInterface.private_dns_name = property(_eni_dns_name, _set_eni_dns_name)


def _ecr_manifest_digest(self):
    manifest = self.image_manifest
    if isinstance(manifest, str):
        manifest = manifest.encode("utf-8")
    self._image_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()


ecr_models.Image._create_digest = _ecr_manifest_digest

_original_get_code = lambda_models.LambdaFunction.get_code


def _get_code_resolved(self):
    resp = _original_get_code(self)
    code = resp.get("Code") or {}
    uri = code.get("ImageUri")
    if code.get("RepositoryType") == "ECR" and uri:
        if "@sha256:" in uri:
            code["ResolvedImageUri"] = uri
        else:
            # A tag: the repository and the digest of the image it names now.
            repo, _, tag = uri.rpartition(":")
            name = repo.split("/", 1)[-1]
            digest = None
            for backend in ecr_models.ecr_backends.values():
                for region_backend in backend.values():
                    r = region_backend.repositories.get(name)
                    for image in getattr(r, "images", []) if r else []:
                        if image.image_tag == tag:
                            digest = image.get_image_digest()
            if digest:
                code["ResolvedImageUri"] = f"{repo}@{digest}"
    return resp


lambda_models.LambdaFunction.get_code = _get_code_resolved

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
