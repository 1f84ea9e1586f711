# LTB module_utils: the names the hypervisor's modules check before a name becomes a path,
# a label or a device name (standard library only).
"""A lab name as ltb.topology allows it (ltb.topology.LAB_NAME; tests/unit/test_names.py keeps
the two the same): it names a directory under the state directory, a container label and a
domain prefix, so no other name gets near a path."""

from __future__ import annotations

import re

LAB_NAME = re.compile(r"[a-z][a-z0-9-]{0,31}")
