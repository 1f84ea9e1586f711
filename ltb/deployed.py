"""The topology a lab was deployed from, and its allocation, kept on its hypervisor.

Deploy copies the topology file to `<state dir>/labs/<lab>/topology.lab.yml` and writes the
lab's allocation (tag and management subnet, see ltb.allocation) beside it as
`allocation.json`; the tasks that act on a running lab later (links, mirror, capture,
snapshot, resources) load the lab model from those, so they act on exactly what deploy built
and use exactly the names it made, whatever happened to the original file since.
"""

from __future__ import annotations

import json
import os
from ipaddress import IPv4Network
from pathlib import Path

from ltb.allocation import DEPLOYED_FILE, AllocationError, held_from_json
from ltb.model import Allocation, Lab
from ltb.topology import load_lab

# The platform settings ltb_state_dir and ltb_libvirt_uri, for the controller's Python
# commands (the portal, the jobs, `ltb resources`); hypervisor-side code gets them as module
# arguments or, for ltb-capture, from its wrapper.
DEFAULT_STATE_DIR = Path(os.environ.get("LTB_STATE_DIR", "/var/lib/ltb"))
DEFAULT_LIBVIRT_URI = os.environ.get("LTB_LIBVIRT_URI", "qemu:///system")
TOPOLOGY_FILE = "topology.lab.yml"
ALLOCATION_FILE = DEPLOYED_FILE


class LabNotDeployed(LookupError):
    pass


def lab_dir(lab: str, state_dir: Path = DEFAULT_STATE_DIR) -> Path:
    return Path(state_dir) / "labs" / lab


def deployed_allocation(lab: str, state_dir: Path = DEFAULT_STATE_DIR) -> Allocation | None:
    """The allocation the lab was deployed with; None for a lab deployed before LTB kept
    one (it has its preferred tag and subnet)."""
    path = lab_dir(lab, state_dir) / ALLOCATION_FILE
    try:
        return held_from_json(json.loads(path.read_text(encoding="utf-8"))).allocation
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise AllocationError(f"lab {lab!r}: {path} cannot be read ({error!r})") from None


def load_deployed_lab(lab: str, state_dir: Path = DEFAULT_STATE_DIR) -> Lab:
    path = lab_dir(lab, state_dir) / TOPOLOGY_FILE
    if not path.is_file():
        raise LabNotDeployed(f"lab {lab!r} is not deployed on this hypervisor (no {path})")
    allocation = deployed_allocation(lab, state_dir)
    if allocation is None:
        return load_lab(path)

    def as_deployed(_lab: Lab, _given: IPv4Network | None) -> Allocation:
        return allocation

    return load_lab(path, as_deployed)
