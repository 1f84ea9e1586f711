"""Named snapshots of running labs, as the controller sees them: names, listing, leftovers.

Snapshots are taken, checked for a restore and deleted on the hypervisor by the ltb_snapshot
module (playbooks/snapshot.yml, restore.yml, remove.yml), whose code is
plugins/module_utils/ltb_snapshot.py: it documents what a snapshot holds and how it stays
atomic. This module is that same code, loaded in the controller's Python (ltb.module_utils),
for the portal, the jobs, `ltb resources` and the tests: the rules of names (snapshot names,
image names, the hidden directories and partial images of runs that died) and the reading of
a state directory are written once. A node's kind decides what is saved of it (ltb.kinds:
`snapshot_vars`; the module's table of kinds).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ltb import module_utils
from ltb.deployed import DEFAULT_STATE_DIR

_impl = module_utils.load("ltb_snapshot")

SNAPSHOT_NAME = _impl.SNAPSHOT_NAME
MANIFEST = _impl.MANIFEST
IMAGE_REPOSITORY = _impl.IMAGE_REPOSITORY
PARTIAL_REPOSITORY = _impl.PARTIAL_REPOSITORY
PARTIAL_DIR = _impl.PARTIAL_DIR
SnapshotError = _impl.SnapshotError
check_name = _impl.check_name
image_name = _impl.image_name
partial_image_name = _impl.partial_image_name
current_owner = _impl.current_owner
owner_alive = _impl.owner_alive


@dataclass(frozen=True)
class Snapshots:
    """Where snapshots live (the hypervisor's state directory, reached from here)."""

    state_dir: Path = DEFAULT_STATE_DIR

    def lab_snapshots(self, lab: str) -> Path:
        return Path(self.state_dir) / "snapshots" / lab

    def path(self, lab: str, name: str) -> Path:
        return self.lab_snapshots(lab) / name

    def settings(self) -> Any:
        return _impl.Settings(self.state_dir, Path(self.state_dir) / "ssh" / "id_ed25519")


def list_snapshots(lab: str, where: Snapshots = Snapshots()) -> list[dict[str, Any]]:
    """Complete snapshots of a lab, oldest first (a directory without manifest is not one)."""
    return _impl.list_snapshots(lab, where.settings())


def load_snapshot(lab: str, name: str, where: Snapshots = Snapshots()) -> dict[str, Any]:
    return _impl.load_snapshot(lab, name, where.settings())


def find_leftovers(lab: str, where: Snapshots = Snapshots()) -> list[str]:
    """What snapshot runs of the lab that died left behind: directories and images."""
    return _impl.find_leftovers(lab, where.settings())


def clean_leftovers(lab: str, where: Snapshots = Snapshots()) -> list[str]:
    """Remove what snapshot runs of the lab that died left behind (as remove does); what was
    done. VMs such a run stopped are found by the names it wrote down."""
    return _impl.clean_leftovers(lab, [], where.settings())


def delete_snapshot(lab: str, name: str, where: Snapshots = Snapshots()) -> bool:
    """Delete a snapshot and its images; False when there was none."""
    return _impl.delete_snapshot(lab, name, where.settings())


def restore_plan(lab: str, name: str, where: Snapshots = Snapshots()) -> dict[str, Any]:
    """What restoring a snapshot deploys, per node, after checking that all of it is there."""
    return _impl.restore_plan(lab, name, where.settings())
