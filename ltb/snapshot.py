"""Named snapshots of running labs: take, list, delete, and check one before a restore.

A snapshot of lab L named N lives in `<state dir>/snapshots/L/N/`, outside the lab's own
directory, so removing the lab keeps its snapshots. It holds:

- `topology.lab.yml`: the topology the lab was deployed from (restore deploys it again);
- `<node>.qcow2` for every VM node: a copy of the node's disk overlay (its changes to the
  base image, which stays shared), and `<node>.memory`, its memory and device state
  (`virsh save`; the disk is copied while the VM is saved, so both are of the same instant).
  Without memory (`vm_memory=False`) the disk is copied with the VM paused after a `sync`
  in the guest, and a restored VM boots from it;
- `snapshot.json`: the manifest, written last. A directory without it is not a snapshot. It
  also holds each node's runtime state (`ltb.runtime`: routes set by hand, replayed after
  restore; FRR's running config is written into the node's files first).

Every container node becomes a Docker image `ltb-snapshot/L/<node>:N` (`docker commit`: its
file system changes and its configuration; checkpointing a running process does not work on
these hosts, so memory is not kept). What lived only in a container's memory and matters to
a lab (routes, FRR's config) is kept as runtime state instead.

A snapshot is built in a hidden `.N.partial-*` directory and renamed into place only when
complete; on any failure everything it made (directory and images) is removed again.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors

from ltb import runtime
from ltb.deployed import DEFAULT_LIBVIRT_URI, DEFAULT_STATE_DIR, TOPOLOGY_FILE, lab_dir
from ltb.model import Lab, Node
from ltb.ssh import ssh_argv
from ltb.topology import TopologyError, load_lab

SNAPSHOT_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
MANIFEST = "snapshot.json"
IMAGE_REPOSITORY = "ltb-snapshot"
# What a VM without `memory` in its topology gets (roles/vm_node: vm_node_default_memory_bytes).
DEFAULT_VM_MEMORY_BYTES = 256 * 1024**2
# Free space a snapshot must leave on the state directory's file system.
DEFAULT_MIN_FREE_BYTES = 512 * 1024**2


class SnapshotError(RuntimeError):
    """A snapshot that cannot be taken, found or restored; the message says why."""


@dataclass(frozen=True)
class Snapshots:
    """Where snapshots live and how LTB reaches what it snapshots."""

    state_dir: Path = DEFAULT_STATE_DIR
    ssh_key: Path = DEFAULT_STATE_DIR / "ssh" / "id_ed25519"
    libvirt_uri: str = DEFAULT_LIBVIRT_URI
    min_free_bytes: int = DEFAULT_MIN_FREE_BYTES
    # Save VM memory with the disk (a restored VM resumes instead of booting).
    vm_memory: bool = True

    def lab_snapshots(self, lab: str) -> Path:
        return Path(self.state_dir) / "snapshots" / lab

    def path(self, lab: str, name: str) -> Path:
        return self.lab_snapshots(lab) / name


def check_name(name: str) -> None:
    if not SNAPSHOT_NAME.fullmatch(name or ""):
        raise SnapshotError(
            f"snapshot name {name!r} is not allowed: use 1-63 lower-case letters, digits and "
            "'_.-', starting with a letter or digit"
        )


def image_name(lab: str, node: str, name: str) -> str:
    return f"{IMAGE_REPOSITORY}/{lab}/{node}:{name}"


def vm_disk(lab: str, node: str, state_dir: Path) -> Path:
    """The overlay disk of a running VM node (as made by the vm_node role)."""
    return lab_dir(lab, state_dir) / "vms" / node / "disk.qcow2"


def _run(*argv: str, timeout: float = 60) -> str:
    try:
        done = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=timeout)
    except subprocess.CalledProcessError as error:
        raise SnapshotError(f"{' '.join(argv)} failed: {error.stderr.strip()}") from None
    except subprocess.TimeoutExpired:
        raise SnapshotError(f"{' '.join(argv)} did not finish in {timeout:.0f} s") from None
    return done.stdout


# Taking a snapshot ------------------------------------------------------------------------------


def _check_running(lab: Lab, client: docker.DockerClient, where: Snapshots) -> None:
    stopped = []
    for node in lab.nodes:
        if node.kind == "vm":
            try:
                state = _run(
                    "virsh", "-c", where.libvirt_uri, "domstate", lab.container_name(node.name)
                )
            except SnapshotError:
                state = "absent"
            state = state.strip()
        else:
            try:
                state = client.containers.get(lab.container_name(node.name)).status
            except docker.errors.NotFound:
                state = "absent"
        if state != "running":
            stopped.append(f"{node.name} is {state}")
    if stopped:
        raise SnapshotError(f"lab {lab.name!r} is not running: {', '.join(stopped)}")


def _check_space(lab: Lab, where: Snapshots) -> None:
    needed = sum(
        vm_disk(lab.name, node.name, where.state_dir).stat().st_blocks * 512
        + ((node.memory_bytes or DEFAULT_VM_MEMORY_BYTES) if where.vm_memory else 0)
        for node in lab.nodes
        if node.kind == "vm" and vm_disk(lab.name, node.name, where.state_dir).exists()
    )
    target = where.lab_snapshots(lab.name)
    free = shutil.disk_usage(target).free
    if free - needed < where.min_free_bytes:
        raise SnapshotError(
            f"not enough disk space for a snapshot of lab {lab.name!r} in {target}: "
            f"{free // 1024**2} MiB free, the VMs need up to {needed // 1024**2} MiB and "
            f"{where.min_free_bytes // 1024**2} MiB must stay free"
        )


def _runtime_node(
    lab: Lab, node: Node, client: docker.DockerClient, where: Snapshots
) -> runtime.Node:
    if node.kind == "vm":
        return runtime.VmNode(node.name, str(node.mgmt_ipv4.ip), Path(where.ssh_key))
    return runtime.ContainerNode(node.name, lab.container_name(node.name), client)


def _snapshot_vm(lab: Lab, node: Node, target: Path, where: Snapshots) -> dict[str, Any]:
    domain = lab.container_name(node.name)
    virsh = ("virsh", "-c", where.libvirt_uri)
    source = vm_disk(lab.name, node.name, where.state_dir)
    disk = target / f"{node.name}.qcow2"
    saved: dict[str, Any] = {"kind": "vm", "disk": disk.name}
    if where.vm_memory:
        # The VM stops while it is saved, so its disk holds exactly what its memory knows.
        memory = target / f"{node.name}.memory"
        _run(*virsh, "save", domain, str(memory), "--running", timeout=600)
        try:
            _run("cp", "--sparse=always", str(source), str(disk))
        finally:
            _run(*virsh, "restore", str(memory), "--running", timeout=600)
        saved["memory"] = memory.name
    else:
        # Flush the guest's page cache, so the paused disk holds what the guest has written.
        _run(*ssh_argv(str(node.mgmt_ipv4.ip), "sync", key=where.ssh_key), timeout=60)
        _run(*virsh, "suspend", domain)
        try:
            _run("cp", "--sparse=always", str(source), str(disk))
        finally:
            _run(*virsh, "resume", domain)
    saved["bytes"] = sum(
        (target / saved[part]).stat().st_blocks * 512
        for part in ("disk", "memory")
        if part in saved
    )
    return saved


def take_snapshot(
    lab_name: str,
    name: str,
    where: Snapshots = Snapshots(),
    client: docker.DockerClient | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Snapshot every node of a running lab; return the manifest."""
    check_name(name)
    deployed = lab_dir(lab_name, where.state_dir) / TOPOLOGY_FILE
    if not deployed.is_file():
        raise SnapshotError(f"lab {lab_name!r} is not running here (it is not deployed)")
    try:
        lab = load_lab(deployed)
    except TopologyError as error:
        raise SnapshotError(
            f"lab {lab_name!r}: cannot read its deployed topology: {error}"
        ) from None
    final = where.path(lab_name, name)
    if final.exists():
        raise SnapshotError(
            f"lab {lab_name!r} already has a snapshot {name!r}: "
            "delete it first or pick another name"
        )
    own_client = client is None
    client = client or docker.from_env()
    images: list[str] = []
    where.lab_snapshots(lab_name).mkdir(parents=True, exist_ok=True)
    partial = where.lab_snapshots(lab_name) / f".{name}.partial-{os.getpid()}"
    started = time.monotonic()
    try:
        _check_running(lab, client, where)
        _check_space(lab, where)
        partial.mkdir()
        shutil.copyfile(deployed, partial / TOPOLOGY_FILE)
        nodes: dict[str, dict[str, Any]] = {}
        for node in lab.nodes:
            progress(f"snapshot of node {node.name}")
            # First, so that FRR's running config is in the files saved next.
            try:
                state = runtime.save(_runtime_node(lab, node, client, where))
            except runtime.RuntimeStateError as error:
                if not (node.kind == "vm" and where.vm_memory):
                    raise
                # A VM image without SSH or iproute2 (a vendor's OS): its memory has it all.
                state = {"not_read": str(error)}
            if node.kind == "vm":
                nodes[node.name] = _snapshot_vm(lab, node, partial, where)
            else:
                container = client.containers.get(lab.container_name(node.name))
                # What the snapshot adds to the disk: the container's own layer.
                listed = client.api.containers(all=True, size=True, filters={"id": container.id})
                changes = listed[0].get("SizeRw", 0) if listed else 0
                repository, tag = image_name(lab_name, node.name, name).rsplit(":", 1)
                image = container.commit(repository=repository, tag=tag, pause=True)
                images.append(image.id)
                nodes[node.name] = {
                    "kind": node.kind,
                    "image": f"{repository}:{tag}",
                    "image_id": image.id,
                    "bytes": changes,
                }
            nodes[node.name]["runtime"] = state
        manifest = {
            "lab": lab_name,
            "name": name,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": round(time.monotonic() - started, 3),
            "nodes": nodes,
        }
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        os.rename(partial, final)
        return manifest
    except BaseException as error:
        shutil.rmtree(partial, ignore_errors=True)
        _remove_if_empty(where.lab_snapshots(lab_name))
        for image_id in images:
            with contextlib.suppress(docker.errors.APIError):
                client.images.remove(image_id, force=True)
        # ENOSPC, from Python or from a command (cp, virsh save) that reports it.
        if (isinstance(error, OSError) and error.errno == errno.ENOSPC) or (
            isinstance(error, SnapshotError) and os.strerror(errno.ENOSPC) in str(error)
        ):
            raise SnapshotError(
                f"out of disk space in {where.lab_snapshots(lab_name)} while taking snapshot "
                f"{name!r} of lab {lab_name!r}; nothing of it was kept ({error})"
            ) from None
        if isinstance(error, docker.errors.APIError | runtime.RuntimeStateError):
            raise SnapshotError(f"snapshot {name!r} of lab {lab_name!r}: {error}") from None
        raise
    finally:
        if own_client:
            client.close()


# Listing, deleting, restoring -------------------------------------------------------------------


def list_snapshots(lab: str, where: Snapshots = Snapshots()) -> list[dict[str, Any]]:
    """Complete snapshots of a lab, oldest first (a directory without manifest is not one)."""
    found = []
    directory = where.lab_snapshots(lab)
    if directory.is_dir():
        for entry in directory.iterdir():
            manifest = entry / MANIFEST
            if not entry.name.startswith(".") and manifest.is_file():
                found.append(json.loads(manifest.read_text()))
    return sorted(found, key=lambda m: (m["created"], m["name"]))


def load_snapshot(lab: str, name: str, where: Snapshots = Snapshots()) -> dict[str, Any]:
    check_name(name)
    manifest = where.path(lab, name) / MANIFEST
    if manifest.is_file():
        return json.loads(manifest.read_text())
    others = sorted(
        path.parent.parent.name
        for path in (Path(where.state_dir) / "snapshots").glob(f"*/{name}/{MANIFEST}")
    )
    if others:
        raise SnapshotError(
            f"snapshot {name!r} belongs to lab {', '.join(others)}, not to lab {lab!r}"
        )
    known = ", ".join(m["name"] for m in list_snapshots(lab, where)) or "none"
    raise SnapshotError(f"lab {lab!r} has no snapshot {name!r} (its snapshots: {known})")


def delete_snapshot(
    lab: str, name: str, where: Snapshots = Snapshots(), client: docker.DockerClient | None = None
) -> bool:
    """Delete a snapshot and its images; False when there was none."""
    check_name(name)
    path = where.path(lab, name)
    manifest_file = path / MANIFEST
    if not path.exists():
        return False
    manifest = json.loads(manifest_file.read_text()) if manifest_file.is_file() else {"nodes": {}}
    own_client = client is None
    client = client or docker.from_env()
    try:
        for node in manifest["nodes"].values():
            if "image" in node:
                with contextlib.suppress(docker.errors.NotFound):
                    client.images.remove(node["image"], force=True)
    finally:
        if own_client:
            client.close()
    shutil.rmtree(path)
    _remove_if_empty(where.lab_snapshots(lab))
    return True


def _remove_if_empty(directory: Path) -> None:
    with contextlib.suppress(OSError):
        directory.rmdir()


def restore_plan(
    lab: str, name: str, where: Snapshots = Snapshots(), client: docker.DockerClient | None = None
) -> dict[str, Any]:
    """What restoring a snapshot deploys, per node, after checking that all of it is there:
    {'topology': path, 'nodes': {node: {'image': ...} | {'disk': path[, 'memory': path]}}}."""
    manifest = load_snapshot(lab, name, where)
    path = where.path(lab, name)
    own_client = client is None
    client = client or docker.from_env()
    nodes: dict[str, dict[str, str]] = {}
    try:
        for node, state in manifest["nodes"].items():
            if state["kind"] == "vm":
                disk = path / state["disk"]
                if not disk.is_file():
                    raise SnapshotError(f"snapshot {name!r} of lab {lab!r} lacks the disk {disk}")
                info = json.loads(_run("qemu-img", "info", "--output=json", str(disk)))
                backing = info.get("full-backing-filename") or info.get("backing-filename")
                if backing and not Path(backing).is_file():
                    raise SnapshotError(
                        f"snapshot {name!r} of lab {lab!r}: the base image {backing} of node "
                        f"{node} is gone"
                    )
                nodes[node] = {"disk": str(disk)}
                if "memory" in state:
                    memory = path / state["memory"]
                    if not memory.is_file():
                        raise SnapshotError(
                            f"snapshot {name!r} of lab {lab!r} lacks the memory {memory}"
                        )
                    nodes[node]["memory"] = str(memory)
            else:
                try:
                    client.images.get(state["image"])
                except docker.errors.ImageNotFound:
                    raise SnapshotError(
                        f"snapshot {name!r} of lab {lab!r} lacks the image {state['image']}"
                    ) from None
                nodes[node] = {"image": state["image"]}
    finally:
        if own_client:
            client.close()
    return {"topology": str(path / TOPOLOGY_FILE), "nodes": nodes}


def restore_runtime(
    lab_name: str,
    name: str,
    where: Snapshots = Snapshots(),
    client: docker.DockerClient | None = None,
) -> dict[str, int]:
    """Give the nodes of a lab restored from a snapshot (and running again) the runtime state
    the snapshot kept; the number of routes replayed per node."""
    manifest = load_snapshot(lab_name, name, where)
    lab = load_lab(where.path(lab_name, name) / TOPOLOGY_FILE)
    own_client = client is None
    client = client or docker.from_env()
    replayed = {}
    try:
        for node_name, saved in manifest["nodes"].items():
            node = _runtime_node(lab, lab.node(node_name), client, where)
            replayed[node_name] = runtime.replay(node, saved.get("runtime", {}))
    except runtime.RuntimeStateError as error:
        raise SnapshotError(f"restore of snapshot {name!r} of lab {lab_name!r}: {error}") from None
    finally:
        if own_client:
            client.close()
    return replayed
