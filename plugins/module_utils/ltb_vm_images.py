# LTB module_utils: VM image builds on a hypervisor (standard library only; shipped to the
# hypervisor with ltb_vm_image_builds).
"""Builds of the VM image on a hypervisor, and which of them may go.

`<state dir>/images/vm/<name>` is a link to the current build, `<name>-<definition hash>` (or
`<name>-<definition hash>-<time>` for a forced rebuild of the same definition, so the disk a
running overlay is based on is never replaced under it). An old build stays as long as a
VM's disk overlay (`labs/*/vms/*/disk.qcow2`) or a snapshot's copy of one
(`snapshots/*/*/*.qcow2`) has its disk as backing file; then it is only taking space.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path


def _backing_file(disk: Path) -> Path | None:
    done = subprocess.run(
        ["qemu-img", "info", "--output=json", "--force-share", str(disk)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        # Unreadable: keep every build rather than guess which one it needs.
        raise RuntimeError(f"cannot read {disk}: {done.stderr.strip()}")
    info = json.loads(done.stdout)
    backing = info.get("full-backing-filename") or info.get("backing-filename")
    return Path(backing) if backing else None


def disks_on_builds(state_dir: Path) -> list[Path]:
    """Every disk that may be based on a VM image build: lab overlays and snapshot copies
    (also of snapshots being taken, in their hidden directories)."""
    patterns = ("labs/*/vms/*/disk.qcow2", "snapshots/*/*/*.qcow2", "snapshots/*/.*/*.qcow2")
    return sorted(disk for pattern in patterns for disk in Path(state_dir).glob(pattern))


def unused_builds(image_dir: Path, name: str, state_dir: Path) -> list[Path]:
    """Builds of image `name` that are not current and that no disk is based on."""
    image_dir = Path(image_dir)
    link = image_dir / name
    current = link.resolve() if link.is_symlink() else None
    in_use = set()
    for disk in disks_on_builds(state_dir):
        backing = _backing_file(disk)
        if backing is not None:
            in_use.add(backing.resolve().parent)
    # Only this image's builds: `ltb-vm-<hash>`, not those of an image named `ltb-vm-frr`.
    build_name = re.compile(rf"^{re.escape(name)}-[0-9a-f]{{12}}(-[0-9]{{14}})?$")
    return sorted(
        build
        for build in image_dir.iterdir()
        if build_name.match(build.name)
        and build.is_dir()
        and not build.is_symlink()
        and build.resolve() != current
        and build.resolve() not in in_use
    )


def prune_builds(image_dir: Path, name: str, state_dir: Path) -> list[str]:
    """Delete the unused builds of image `name`; their paths."""
    removed = []
    for build in unused_builds(image_dir, name, state_dir):
        shutil.rmtree(build)
        removed.append(str(build))
    return removed
