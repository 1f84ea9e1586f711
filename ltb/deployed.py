"""The topology a lab was deployed from, kept on its hypervisor.

Deploy copies the topology file to `<state dir>/labs/<lab>/topology.lab.yml`; the tasks that
act on a running lab later (mirror, capture, snapshot) load the lab model from that copy, so
they act on exactly what deploy built, whatever happened to the original file since.
"""

from __future__ import annotations

import os
from pathlib import Path

from ltb.model import Lab
from ltb.topology import load_lab

# The platform settings ltb_state_dir and ltb_libvirt_uri, for the Python commands run on a
# hypervisor (ltb-capture gets the state directory from its wrapper).
DEFAULT_STATE_DIR = Path(os.environ.get("LTB_STATE_DIR", "/var/lib/ltb"))
DEFAULT_LIBVIRT_URI = os.environ.get("LTB_LIBVIRT_URI", "qemu:///system")
TOPOLOGY_FILE = "topology.lab.yml"


class LabNotDeployed(LookupError):
    pass


def lab_dir(lab: str, state_dir: Path = DEFAULT_STATE_DIR) -> Path:
    return Path(state_dir) / "labs" / lab


def load_deployed_lab(lab: str, state_dir: Path = DEFAULT_STATE_DIR) -> Lab:
    path = lab_dir(lab, state_dir) / TOPOLOGY_FILE
    if not path.is_file():
        raise LabNotDeployed(f"lab {lab!r} is not deployed on this hypervisor (no {path})")
    return load_lab(path)
