//! containerd's state as its bbolt files hold it, read without containerd:
//! the containers and images of every namespace (`meta.db`) and the
//! overlay snapshotter's snapshots (`metadata.db`), which give each
//! container's writable layer and the layers beneath it.
//!
//! Layout read (containerd 1.x metadata schema `v1`):
//! - `v1/<ns>/containers/<id>/`: `image`, `snapshotter`, `snapshotKey`,
//!   `runtime/name`, `spec` (a protobuf `Any` holding the OCI spec as JSON),
//!   `labels/`, `createdat`, `updatedat` (Go's binary time);
//! - `v1/<ns>/images/<name>/target/`: `digest`, `mediatype`;
//! - `v1/<ns>/snapshots/<snapshotter>/<key>/name`: the snapshotter's own key;
//! - the snapshotter's `v1/snapshots/<name>/`: `id` (uvarint: the directory
//!   `snapshots/<id>/fs`), `kind` (1 view, 2 active, 3 committed), `parent`.
//!
//! A record that cannot be read is a problem named in the result; the
//! others are still read.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::bolt::{Bolt, BoltError, Bucket};

/// The OCI spec's type in a container's `spec` field.
pub const SPEC_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Container {
    pub namespace: String,
    pub id: String,
    pub image: String,
    pub runtime: String,
    pub snapshotter: String,
    pub snapshot_key: String,
    /// The snapshotter's key for `snapshot_key` (`ns/N/key`), when recorded.
    pub snapshot_name: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// The OCI runtime spec, as the JSON containerd stored.
    #[serde(skip)]
    pub spec: Option<Vec<u8>>,
    /// Unix seconds and nanoseconds.
    pub created: Option<(i64, u32)>,
    pub updated: Option<(i64, u32)>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Image {
    pub namespace: String,
    pub name: String,
    pub digest: String,
    pub media_type: String,
}

#[derive(Debug, Default)]
pub struct Metadata {
    pub containers: Vec<Container>,
    pub images: Vec<Image>,
    /// What could not be read, and where.
    pub problems: Vec<String>,
}

impl Metadata {
    /// The digest of the image named `name` in `namespace`.
    pub fn image_digest(&self, namespace: &str, name: &str) -> Option<&str> {
        self.images
            .iter()
            .find(|i| i.namespace == namespace && i.name == name)
            .map(|i| i.digest.as_str())
    }
}

fn text(b: Option<&[u8]>) -> String {
    String::from_utf8_lossy(b.unwrap_or_default()).into_owned()
}

/// Go's `time.MarshalBinary`: version 1 or 2, seconds since year 1 (big
/// endian), nanoseconds, zone offset. Returns Unix seconds and nanoseconds.
pub fn go_time(b: &[u8]) -> Option<(i64, u32)> {
    const YEAR1_TO_UNIX: i64 = 62_135_596_800;
    if !matches!(b.first(), Some(1 | 2)) || b.len() < 15 {
        return None;
    }
    let secs = i64::from_be_bytes(b.get(1..9)?.try_into().ok()?);
    let nanos = u32::from_be_bytes(b.get(9..13)?.try_into().ok()?);
    if nanos >= 1_000_000_000 {
        return None;
    }
    Some((secs.checked_sub(YEAR1_TO_UNIX)?, nanos))
}

/// A protobuf base-128 varint at the start of `b`: (value, length).
pub fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    for (i, &x) in b.iter().enumerate().take(10) {
        v |= u64::from(x & 0x7f) << (7 * i);
        if x & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// A protobuf `Any`: (type URL, value). Other fields are skipped.
pub fn any(b: &[u8]) -> Option<(String, &[u8])> {
    let (mut url, mut value) = (None, None);
    let mut rest = b;
    while !rest.is_empty() {
        let (tag, n) = uvarint(rest)?;
        rest = rest.get(n..)?;
        match tag & 7 {
            2 => {
                let (len, n) = uvarint(rest)?;
                let len = usize::try_from(len).ok()?;
                let field = rest.get(n..n.checked_add(len)?)?;
                rest = rest.get(n + len..)?;
                match tag >> 3 {
                    1 => url = Some(String::from_utf8_lossy(field).into_owned()),
                    2 => value = Some(field),
                    _ => {}
                }
            }
            0 => rest = rest.get(uvarint(rest)?.1..)?,
            1 => rest = rest.get(8..)?,
            5 => rest = rest.get(4..)?,
            _ => return None,
        }
    }
    Some((url.unwrap_or_default(), value.unwrap_or_default()))
}

fn strings(b: Option<Bucket<'_>>) -> Result<BTreeMap<String, String>, BoltError> {
    let mut out = BTreeMap::new();
    if let Some(b) = b {
        for (k, v) in b.entries()? {
            if let Some(v) = v.data() {
                out.insert(text(Some(k)), text(Some(v)));
            }
        }
    }
    Ok(out)
}

fn container(ns: &str, id: &[u8], b: Bucket<'_>) -> Result<(Container, Option<String>), BoltError> {
    let mut c = Container {
        namespace: ns.to_owned(),
        id: text(Some(id)),
        image: text(b.data(b"image")?),
        snapshotter: text(b.data(b"snapshotter")?),
        snapshot_key: text(b.data(b"snapshotKey")?),
        labels: strings(b.get(b"labels")?.and_then(|v| v.bucket()))?,
        created: b.data(b"createdat")?.and_then(go_time),
        updated: b.data(b"updatedat")?.and_then(go_time),
        ..Container::default()
    };
    if let Some(rt) = b.get(b"runtime")?.and_then(|v| v.bucket()) {
        c.runtime = text(rt.data(b"name")?);
    }
    let mut problem = None;
    if let Some(raw) = b.data(b"spec")? {
        match any(raw) {
            Some((url, value)) if url == SPEC_TYPE => c.spec = Some(value.to_vec()),
            Some((url, _)) => {
                problem = Some(format!("container {ns}/{}: spec of type {url:?}", c.id));
            }
            None => {
                problem = Some(format!(
                    "container {ns}/{}: spec is not a protobuf Any",
                    c.id
                ));
            }
        }
    }
    Ok((c, problem))
}

/// Reads `meta.db`.
pub fn read_metadata(data: &[u8]) -> Result<Metadata, BoltError> {
    let db = Bolt::open(data)?;
    let mut out = Metadata::default();
    let Some(v1) = db.bucket(&[b"v1"])? else {
        out.problems
            .push("no v1 bucket: not containerd 1.x metadata".into());
        return Ok(out);
    };
    for (ns, v) in v1.entries()? {
        let Some(nsb) = v.bucket() else { continue };
        let ns = text(Some(ns));
        let mut one = |what: &str, r: Result<(), BoltError>| {
            if let Err(e) = r {
                out.problems.push(format!("namespace {ns}: {what}: {e}"));
            }
        };
        let mut containers = Vec::new();
        let mut problems = Vec::new();
        let r = (|| {
            let snaps = nsb.get(b"snapshots")?.and_then(|v| v.bucket());
            let Some(cb) = nsb.get(b"containers")?.and_then(|v| v.bucket()) else {
                return Ok(());
            };
            for (id, v) in cb.entries()? {
                let Some(b) = v.bucket() else { continue };
                let (mut c, problem) = container(&ns, id, b)?;
                problems.extend(problem);
                if let Some(s) = snaps {
                    c.snapshot_name = s
                        .get(c.snapshotter.as_bytes())?
                        .and_then(|v| v.bucket())
                        .map(|b| b.get(c.snapshot_key.as_bytes()))
                        .transpose()?
                        .flatten()
                        .and_then(|v| v.bucket())
                        .map(|b| b.data(b"name"))
                        .transpose()?
                        .flatten()
                        .map(|n| text(Some(n)));
                }
                containers.push(c);
            }
            Ok(())
        })();
        one("containers", r);
        let mut images = Vec::new();
        let r = (|| {
            let Some(ib) = nsb.get(b"images")?.and_then(|v| v.bucket()) else {
                return Ok(());
            };
            for (name, v) in ib.entries()? {
                let Some(b) = v.bucket() else { continue };
                let target = b.get(b"target")?.and_then(|v| v.bucket());
                let (digest, media_type) = match target {
                    Some(t) => (text(t.data(b"digest")?), text(t.data(b"mediatype")?)),
                    None => (String::new(), String::new()),
                };
                images.push(Image {
                    namespace: ns.clone(),
                    name: text(Some(name)),
                    digest,
                    media_type,
                });
            }
            Ok(())
        })();
        one("images", r);
        out.containers.extend(containers);
        out.images.extend(images);
        out.problems.extend(problems);
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    pub id: u64,
    /// 1 view, 2 active (writable), 3 committed.
    pub kind: u8,
    pub parent: Option<String>,
}

/// Reads a snapshotter's `metadata.db`: each snapshot by its key.
pub fn read_snapshots(data: &[u8]) -> Result<BTreeMap<String, Snapshot>, BoltError> {
    let db = Bolt::open(data)?;
    let mut out = BTreeMap::new();
    let Some(s) = db.bucket(&[b"v1", b"snapshots"])? else {
        return Ok(out);
    };
    for (k, v) in s.entries()? {
        let Some(b) = v.bucket() else { continue };
        let Some((id, _)) = b.data(b"id")?.and_then(uvarint) else {
            continue;
        };
        out.insert(
            text(Some(k)),
            Snapshot {
                id,
                kind: b
                    .data(b"kind")?
                    .and_then(|k| k.first().copied())
                    .unwrap_or(0),
                parent: b.data(b"parent")?.map(|p| text(Some(p))),
            },
        );
    }
    Ok(out)
}

/// The ids of `name` and each snapshot beneath it, top first; a loop or a
/// missing parent ends the chain (the second value says which).
pub fn chain(snaps: &BTreeMap<String, Snapshot>, name: &str) -> (Vec<u64>, Option<String>) {
    let mut ids = Vec::new();
    let mut cur = Some(name.to_owned());
    while let Some(n) = cur {
        let Some(s) = snaps.get(&n) else {
            return (
                ids,
                Some(format!("snapshot {n:?} is not in the snapshotter")),
            );
        };
        if ids.contains(&s.id) || ids.len() > 512 {
            return (ids, Some(format!("snapshot {n:?} loops back")));
        }
        ids.push(s.id);
        cur = s.parent.clone();
    }
    (ids, None)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use crate::bolt::tests::{file, inline, leaf};

    const BUCKET: u32 = 1;

    fn spec_any(json: &[u8]) -> Vec<u8> {
        let mut v = vec![0x0a, SPEC_TYPE.len() as u8];
        v.extend_from_slice(SPEC_TYPE.as_bytes());
        v.push(0x12);
        v.push(json.len() as u8);
        v.extend_from_slice(json);
        v
    }

    #[test]
    fn containers_images_and_snapshot_names() {
        let mut t = vec![1u8];
        t.extend_from_slice(&(62_135_596_800i64 + 1_700_000_000).to_be_bytes());
        t.extend_from_slice(&5u32.to_be_bytes());
        t.extend_from_slice(&0i16.to_be_bytes());
        let labels = inline(&[(b"io.kubernetes.pod.name", 0, b"web-1".to_vec())]);
        let runtime = inline(&[(b"name", 0, b"io.containerd.runc.v2".to_vec())]);
        let c1 = inline(&[
            (b"createdat", 0, t.clone()),
            (b"image", 0, b"docker.io/library/bb:local".to_vec()),
            (b"labels", BUCKET, labels),
            (b"runtime", BUCKET, runtime),
            (b"snapshotKey", 0, b"c1".to_vec()),
            (b"snapshotter", 0, b"overlayfs".to_vec()),
            (b"spec", 0, spec_any(br#"{"ociVersion":"1"}"#)),
        ]);
        let containers = inline(&[(b"c1", BUCKET, c1)]);
        let target = inline(&[(b"digest", 0, b"sha256:ab".to_vec())]);
        let image = inline(&[(b"target", BUCKET, target)]);
        let images = inline(&[(b"docker.io/library/bb:local", BUCKET, image)]);
        let key = inline(&[(b"name", 0, b"k8s.io/3/c1".to_vec())]);
        let ov = inline(&[(b"c1", BUCKET, key)]);
        let snaps = inline(&[(b"overlayfs", BUCKET, ov)]);
        // The namespace is a paged bucket (page 5) to mix both kinds.
        let ns = leaf(
            5,
            &[
                (b"containers", BUCKET, containers),
                (b"images", BUCKET, images),
                (b"snapshots", BUCKET, snaps),
            ],
        );
        let mut ns_ref = 5u64.to_le_bytes().to_vec();
        ns_ref.extend_from_slice(&[0; 8]);
        let v1 = leaf(4, &[(b"k8s.io", BUCKET, ns_ref)]);
        let mut v1_ref = 4u64.to_le_bytes().to_vec();
        v1_ref.extend_from_slice(&[0; 8]);
        let root = leaf(3, &[(b"v1", BUCKET, v1_ref)]);
        let data = file(&[root, v1, ns], 3);
        let m = read_metadata(&data).unwrap();
        assert!(m.problems.is_empty(), "{:?}", m.problems);
        let c = &m.containers[0];
        assert_eq!(c.id, "c1");
        assert_eq!(c.runtime, "io.containerd.runc.v2");
        assert_eq!(c.labels["io.kubernetes.pod.name"], "web-1");
        assert_eq!(c.snapshot_name.as_deref(), Some("k8s.io/3/c1"));
        assert_eq!(c.spec.as_deref(), Some(&br#"{"ociVersion":"1"}"#[..]));
        assert_eq!(c.created, Some((1_700_000_000, 5)));
        assert_eq!(
            m.image_digest("k8s.io", "docker.io/library/bb:local"),
            Some("sha256:ab")
        );
    }

    #[test]
    fn p2_snapshot_chains_end_at_loops_and_missing_parents() {
        let mut s = BTreeMap::new();
        let snap = |id, parent: Option<&str>| Snapshot {
            id,
            kind: 2,
            parent: parent.map(str::to_owned),
        };
        s.insert("top".into(), snap(3, Some("mid")));
        s.insert("mid".into(), snap(2, Some("base")));
        s.insert("base".into(), snap(1, None));
        assert_eq!(chain(&s, "top"), (vec![3, 2, 1], None));
        s.insert("base".into(), snap(1, Some("top")));
        let (ids, why) = chain(&s, "top");
        assert_eq!(ids, [3, 2, 1]);
        assert!(why.unwrap().contains("loops"));
        s.insert("base".into(), snap(1, Some("gone")));
        assert!(chain(&s, "top").1.unwrap().contains("\"gone\""));
    }

    #[test]
    fn p2_malformed_any_and_times_are_none() {
        assert_eq!(any(&[0x0a, 0x7f]), None);
        assert_eq!(any(&[0x0b]), None);
        assert_eq!(go_time(&[1, 0, 0]), None);
        assert_eq!(uvarint(&[0xff; 11]), None);
        assert_eq!(uvarint(&[0x96, 0x01]), Some((150, 2)));
    }
}
