"""Starts moto's server for custody's tests and benchmarks.

moto reports an EBS snapshot block size of 512 bytes, where AWS (and every
real EBS direct client) uses 524288. This launcher corrects the emulator,
not the client: each new EBS snapshot gets AWS's block size, then moto's own
server entry point runs with the given arguments.
"""

import sys

from moto.ebs import models as ebs_models
from moto.server import main

EBS_BLOCK_SIZE = 524288  # AWS's EBS direct API block size (512 KiB)

_original_init = ebs_models.EBSSnapshot.__init__


def _init_with_aws_block_size(self, *args, **kwargs):
    _original_init(self, *args, **kwargs)
    self.block_size = EBS_BLOCK_SIZE


ebs_models.EBSSnapshot.__init__ = _init_with_aws_block_size

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
