"""What a lab has created on this hypervisor, found by the lab identity it carries.

Containers carry the Docker label `ltb.lab` (and so do images committed from them: an
untagged one, left when a snapshot was deleted while the lab ran from it, belongs to the
lab), OVS bridges, ports and mirrors `external_ids:ltb-lab`, hypervisor-side interfaces the
alias `ltb:<lab>:...`, libvirt domains (VM nodes) the name `ltb-<lab>.<node>`, and the lab's
files (VM disks too) live in `<state dir>/labs/<lab>/`; a snapshot run that died leaves a
hidden directory in `<state dir>/snapshots/<lab>/` and images `ltb-partial-snapshot/<lab>/...`
(complete snapshots are kept on purpose, and are not listed). Used to list a lab's resources
and to check that removing a lab left nothing behind.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import docker

from ltb.deployed import DEFAULT_LIBVIRT_URI, DEFAULT_STATE_DIR, lab_dir
from ltb.snapshot import Snapshots, find_leftovers


@dataclass
class LabResources:
    containers: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    bridges: list[str] = field(default_factory=list)
    ports: list[str] = field(default_factory=list)
    mirrors: list[str] = field(default_factory=list)
    interfaces: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    domains: list[str] = field(default_factory=list)
    # Hidden directories and partial images of snapshot runs that died (ltb.snapshot).
    snapshot_leftovers: list[str] = field(default_factory=list)

    def empty(self) -> bool:
        return not any(getattr(self, kind) for kind in KINDS)


KINDS = (
    "containers",
    "images",
    "bridges",
    "ports",
    "mirrors",
    "interfaces",
    "files",
    "domains",
    "snapshot_leftovers",
)


def find_lab_resources(lab: str, state_dir: Path = DEFAULT_STATE_DIR) -> LabResources:
    directory = lab_dir(lab, state_dir)
    return LabResources(
        containers=_containers(lab),
        images=_untagged_images(lab),
        bridges=_ovs_rows("Bridge", lab),
        ports=_ovs_rows("Port", lab),
        mirrors=_ovs_rows("Mirror", lab),
        interfaces=_interfaces(lab),
        files=[str(directory)] if directory.exists() else [],
        domains=_domains(lab),
        snapshot_leftovers=find_leftovers(lab, Snapshots(state_dir=Path(state_dir))),
    )


def _containers(lab: str) -> list[str]:
    client = docker.from_env()
    try:
        found = client.containers.list(all=True, filters={"label": f"ltb.lab={lab}"})
        return sorted(c.name for c in found)
    finally:
        client.close()


def _untagged_images(lab: str) -> list[str]:
    client = docker.from_env()
    try:
        found = client.images.list(filters={"dangling": True, "label": f"ltb.lab={lab}"})
        return sorted(image.short_id for image in found)
    finally:
        client.close()


def _ovs_rows(table: str, lab: str) -> list[str]:
    out = subprocess.run(
        [
            "ovs-vsctl",
            "--format=json",
            "--columns=name",
            "find",
            table,
            f"external_ids:ltb-lab={lab}",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return sorted(row[0] for row in json.loads(out)["data"])


def _interfaces(lab: str) -> list[str]:
    out = subprocess.run(
        ["ip", "-j", "-d", "link", "show"], check=True, capture_output=True, text=True
    ).stdout
    prefix = f"ltb:{lab}:"
    return sorted(
        link["ifname"] for link in json.loads(out) if link.get("ifalias", "").startswith(prefix)
    )


def _domains(lab: str) -> list[str]:
    """libvirt domains of the lab's VM nodes, running or not; none where libvirt is absent."""
    if shutil.which("virsh") is None:
        return []
    out = subprocess.run(
        ["virsh", "-c", DEFAULT_LIBVIRT_URI, "list", "--all", "--name"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    prefix = f"ltb-{lab}."
    return sorted(name for name in out.split() if name.startswith(prefix))
