"""Which VM image builds may go: not the current one, not one a lab or snapshot disk is based
on. Real qcow2 files made with qemu-img."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ltb.module_utils import load

# The module_utils that ltb_vm_image_builds runs on the hypervisor.
vm_images = load("ltb_vm_images")
prune_builds, unused_builds = vm_images.prune_builds, vm_images.unused_builds


def qcow2(path: Path, backing: Path | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    argv = ["qemu-img", "create", "-q", "-f", "qcow2"]
    if backing is not None:
        argv += ["-F", "qcow2", "-b", str(backing)]
    subprocess.run([*argv, str(path), "16M"], check=True)


def test_only_builds_that_nothing_uses_are_removed(tmp_path):
    images = tmp_path / "images" / "vm"
    a, b, c, d = (f"ltb-vm-{x * 12}" for x in "abcd")
    forced = f"{d}-20261125120000"
    for build in (a, b, c, d, forced):
        qcow2(images / build / "disk.qcow2")
    os.symlink(forced, images / "ltb-vm")
    # Another image's builds, even one whose name starts like this one's.
    for build in ("other-eeeeeeeeeeee", "ltb-vm-frr-ffffffffffff"):
        qcow2(images / build / "disk.qcow2")
    qcow2(tmp_path / "labs" / "l1" / "vms" / "r1" / "disk.qcow2", images / a / "disk.qcow2")
    qcow2(tmp_path / "snapshots" / "l2" / "s1" / "vm.qcow2", images / b / "disk.qcow2")

    assert unused_builds(images, "ltb-vm", tmp_path) == [images / c, images / d]
    assert prune_builds(images, "ltb-vm", tmp_path) == [str(images / c), str(images / d)]
    assert sorted(p.name for p in images.iterdir()) == sorted(
        ["ltb-vm", a, b, forced, "other-eeeeeeeeeeee", "ltb-vm-frr-ffffffffffff"]
    )
    assert unused_builds(images, "ltb-vm", tmp_path) == []
