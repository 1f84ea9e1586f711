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

A snapshot is atomic. It is built in a hidden directory `.N.partial-<owner>` and its images
are committed as `ltb-partial-snapshot/L/<node>:N-<owner>` (the owner: the process taking
it, pid and start time); the manifest is written last, the directory renamed into place, then
the images get their final names. On a failure or SIGTERM everything it made is removed again
and every node runs as before (a VM saved with its memory is restored, or booted from its disk
with the memory kept, see `_resume_saved_vm`). What a run killed outright (SIGKILL) left is a
leftover of a dead owner: the next snapshot, delete or remove of the lab cleans it
(`clean_leftovers`), and `ltb resources` lists it until then.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors

from ltb import runtime
from ltb.deployed import (
    DEFAULT_LIBVIRT_URI,
    DEFAULT_STATE_DIR,
    TOPOLOGY_FILE,
    lab_dir,
    load_deployed_lab,
)
from ltb.model import Lab, Node, container_name
from ltb.ssh import ssh_argv
from ltb.topology import TopologyError

SNAPSHOT_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
MANIFEST = "snapshot.json"
IMAGE_REPOSITORY = "ltb-snapshot"
# Images of snapshots being taken (or of runs that died): never used by a restore.
PARTIAL_REPOSITORY = "ltb-partial-snapshot"
PARTIAL_DIR = re.compile(r"\.(?P<name>.+)\.partial-(?P<owner>[0-9]+(-[0-9]+)?)")
# `virsh restore` attempts before a VM saved by a snapshot is booted from its disk instead.
RESTORE_ATTEMPTS = 2
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


def partial_image_name(lab: str, node: str, name: str, owner: str) -> str:
    return f"{PARTIAL_REPOSITORY}/{lab}/{node}:{name}-{owner}"


# Owners of snapshots being taken ------------------------------------------------------------


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22, after the command name in parentheses (which may hold spaces).
    return stat.rsplit(")", 1)[1].split()[19]


def current_owner() -> str:
    """This process, as `<pid>-<start time>`: a pid alone may be reused after a crash."""
    return f"{os.getpid()}-{_start_time(os.getpid())}"


def owner_alive(owner: str) -> bool:
    pid, _, started = owner.partition("-")
    if not pid.isdigit():
        return False  # not a name LTB gives: nobody owns it
    now = _start_time(int(pid))
    return now is not None and (not started or now == started)


class SnapshotCancelled(SnapshotError):
    """SIGTERM or SIGINT while a snapshot was taken."""


class _Cancellation:
    """SIGTERM/SIGINT while a snapshot is taken end it, but never inside a step: a VM between
    `virsh save` and `virsh restore`, or an image being committed, is finished first."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self.depth = 0
        self.previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: Any) -> None:
        self.signal = signum
        if self.depth == 0:
            self.check()

    def check(self) -> None:
        if self.signal is not None:
            raise SnapshotCancelled(f"cancelled by signal {signal.Signals(self.signal).name}")

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
        self.check()

    def __enter__(self) -> _Cancellation:
        # Signal handlers can only be set in the main thread (a module's, a job's).
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *_: Any) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


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


def _virsh(where: Snapshots) -> tuple[str, ...]:
    return ("virsh", "-c", where.libvirt_uri)


def _domain_state(domain: str, where: Snapshots) -> str:
    try:
        return _run(*_virsh(where), "domstate", domain).strip()
    except SnapshotError:
        return "absent"


def _resume_saved_vm(lab: str, node: str, domain: str, memory: Path, where: Snapshots) -> None:
    """Make a VM that `virsh save` stopped run again, from its saved memory.

    The memory file is the only copy of the VM's running state: it is never deleted here.
    When `virsh restore` fails (twice), the VM boots from its disk and the memory (with the
    disk copy of the same instant, if there is one) moves to the lab's directory, where it
    stays until the lab is removed; the SnapshotError raised says where.
    """
    failures = []
    for attempt in range(RESTORE_ATTEMPTS):
        try:
            _run(*_virsh(where), "restore", str(memory), "--running", timeout=600)
            return
        except SnapshotError as error:
            failures.append(str(error))
            if _domain_state(domain, where) == "running":
                return
            time.sleep(1 + attempt)
    kept = (
        lab_dir(lab, where.state_dir)
        / "vms"
        / node
        / f"unrestored-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    )
    kept.mkdir(parents=True, exist_ok=True)
    for part in (memory, memory.with_suffix(".qcow2")):
        if part.exists():
            shutil.move(part, kept / part.name)
    why = failures[-1]
    try:
        _run(*_virsh(where), "start", domain, timeout=120)
    except SnapshotError as error:
        raise SnapshotError(
            f"node {node}: the VM could not be resumed from the memory saved for the snapshot "
            f"({why}) nor booted ({error}); its memory is kept in {kept} "
            f"(virsh restore {kept / memory.name})"
        ) from None
    raise SnapshotError(
        f"node {node}: the VM could not be resumed from the memory saved for the snapshot "
        f"({why}); it was booted again from its disk, and the memory is kept in {kept}"
    )


def _snapshot_vm(
    lab: Lab, node: Node, target: Path, where: Snapshots, cancel: _Cancellation
) -> dict[str, Any]:
    domain = lab.container_name(node.name)
    source = vm_disk(lab.name, node.name, where.state_dir)
    disk = target / f"{node.name}.qcow2"
    saved: dict[str, Any] = {"kind": "vm", "disk": disk.name}
    if where.vm_memory:
        # The VM stops while it is saved, so its disk holds exactly what its memory knows.
        memory = target / f"{node.name}.memory"
        with cancel.step():
            _run(*_virsh(where), "save", domain, str(memory), "--running", timeout=600)
            try:
                _run("cp", "--sparse=always", str(source), str(disk))
            finally:
                _resume_saved_vm(lab.name, node.name, domain, memory, where)
        saved["memory"] = memory.name
    else:
        # Flush the guest's page cache, so the paused disk holds what the guest has written.
        _run(*ssh_argv(str(node.mgmt_ipv4.ip), "sync", key=where.ssh_key), timeout=60)
        with cancel.step():
            _run(*_virsh(where), "suspend", domain)
            try:
                _run("cp", "--sparse=always", str(source), str(disk))
            finally:
                _run(*_virsh(where), "resume", domain)
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
    """Snapshot every node of a running lab; return the manifest. Leftovers of earlier runs
    that died are cleaned first."""
    check_name(name)
    deployed = lab_dir(lab_name, where.state_dir) / TOPOLOGY_FILE
    if not deployed.is_file():
        raise SnapshotError(f"lab {lab_name!r} is not running here (it is not deployed)")
    try:
        lab = load_deployed_lab(lab_name, where.state_dir)
    except (TopologyError, ValueError) as error:
        raise SnapshotError(
            f"lab {lab_name!r}: cannot read its deployed topology: {error}"
        ) from None
    final = where.path(lab_name, name)
    own_client = client is None
    client = client or docker.from_env()
    owner = current_owner()
    complete = False
    partial = where.lab_snapshots(lab_name) / f".{name}.partial-{owner}"
    started = time.monotonic()
    try:
        with _Cancellation() as cancel:
            for done in clean_leftovers(lab_name, where, client):
                progress(f"cleaned: {done}")
            if final.exists():
                raise SnapshotError(
                    f"lab {lab_name!r} already has a snapshot {name!r}: "
                    "delete it first or pick another name"
                )
            _check_running(lab, client, where)
            where.lab_snapshots(lab_name).mkdir(parents=True, exist_ok=True)
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
                    nodes[node.name] = _snapshot_vm(lab, node, partial, where, cancel)
                else:
                    nodes[node.name] = _snapshot_container(lab, node, name, owner, client, cancel)
                nodes[node.name]["runtime"] = state
            manifest = {
                "lab": lab_name,
                "name": name,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "seconds": round(time.monotonic() - started, 3),
                "nodes": nodes,
            }
            (partial / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
            # The snapshot exists once renamed: from here on a signal no longer cancels it.
            # Its images get their names after (a run killed in between leaves that to
            # `clean_leftovers`; a restore finds them by id meanwhile).
            cancel.depth += 1
            os.rename(partial, final)
            complete = True
            try:
                _name_images(lab_name, name, owner, nodes, client)
            except docker.errors.APIError as error:
                progress(f"images of snapshot {name!r} keep their partial names for now: {error}")
            return manifest
    except BaseException as error:
        if complete:
            raise
        shutil.rmtree(partial, ignore_errors=True)
        _remove_if_empty(where.lab_snapshots(lab_name))
        # By name: also an image whose commit ended just as the run was cancelled.
        for reference, _, _ in _partial_images(lab_name, client, lambda o: o == owner):
            with contextlib.suppress(docker.errors.APIError):
                client.images.remove(reference, force=True)
        # ENOSPC, from Python or from a command (cp, virsh save) that reports it.
        if (isinstance(error, OSError) and error.errno == errno.ENOSPC) or (
            isinstance(error, SnapshotError) and os.strerror(errno.ENOSPC) in str(error)
        ):
            raise SnapshotError(
                f"out of disk space in {where.lab_snapshots(lab_name)} while taking snapshot "
                f"{name!r} of lab {lab_name!r}; nothing of it was kept ({error})"
            ) from None
        if isinstance(error, docker.errors.APIError | runtime.RuntimeStateError | SnapshotError):
            raise SnapshotError(
                f"snapshot {name!r} of lab {lab_name!r} failed, nothing of it was kept: {error}"
            ) from None
        raise
    finally:
        if own_client:
            client.close()


def _snapshot_container(
    lab: Lab,
    node: Node,
    name: str,
    owner: str,
    client: docker.DockerClient,
    cancel: _Cancellation,
) -> dict[str, Any]:
    container = client.containers.get(lab.container_name(node.name))
    # What the snapshot adds to the disk: the container's own layer.
    listed = client.api.containers(all=True, size=True, filters={"id": container.id})
    changes = listed[0].get("SizeRw", 0) if listed else 0
    repository, tag = partial_image_name(lab.name, node.name, name, owner).rsplit(":", 1)
    with cancel.step():
        # Docker pauses the container for the commit and resumes it, also if we die here.
        image = container.commit(repository=repository, tag=tag, pause=True)
    return {
        "kind": node.kind,
        "image": image_name(lab.name, node.name, name),
        "image_id": image.id,
        "bytes": changes,
    }


def _name_images(
    lab: str, name: str, owner: str, nodes: dict[str, dict[str, Any]], client: docker.DockerClient
) -> None:
    """Give a complete snapshot's images their names, and drop their partial names."""
    for node, state in nodes.items():
        if "image_id" not in state:
            continue
        repository, tag = state["image"].rsplit(":", 1)
        client.images.get(state["image_id"]).tag(repository, tag)
        with contextlib.suppress(docker.errors.NotFound):
            client.images.remove(partial_image_name(lab, node, name, owner))


# Leftovers of runs that died ------------------------------------------------------------------


def _dead_partial_dirs(lab: str, where: Snapshots) -> list[tuple[Path, str]]:
    directory = where.lab_snapshots(lab)
    found = []
    if directory.is_dir():
        for entry in sorted(directory.iterdir()):
            match = PARTIAL_DIR.fullmatch(entry.name)
            if match and not owner_alive(match["owner"]):
                found.append((entry, match["name"]))
    return found


def _partial_images(
    lab: str, client: docker.DockerClient, owned: Callable[[str], bool]
) -> list[tuple[str, str, str]]:
    """(partial image name, node, snapshot name) of the lab's partial images whose owner
    passes `owned`."""
    found = []
    for image in client.images.list(filters={"reference": f"{PARTIAL_REPOSITORY}/{lab}/*"}):
        for reference in image.tags:
            repository, _, tag = reference.rpartition(":")
            node = repository.rsplit("/", 1)[-1]
            name, _, started = tag.rpartition("-")
            name, _, pid = name.rpartition("-")
            if repository.startswith(f"{PARTIAL_REPOSITORY}/{lab}/") and owned(f"{pid}-{started}"):
                found.append((reference, node, name))
    return sorted(found)


def _dead_partial_images(lab: str, client: docker.DockerClient) -> list[tuple[str, str, str]]:
    return _partial_images(lab, client, lambda owner: not owner_alive(owner))


def find_leftovers(
    lab: str, where: Snapshots = Snapshots(), client: docker.DockerClient | None = None
) -> list[str]:
    """What snapshot runs of the lab that died left behind: directories and images."""
    own_client = client is None
    client = client or docker.from_env()
    try:
        return [str(path) for path, _ in _dead_partial_dirs(lab, where)] + [
            reference for reference, _, _ in _dead_partial_images(lab, client)
        ]
    finally:
        if own_client:
            client.close()


def clean_leftovers(
    lab: str, where: Snapshots = Snapshots(), client: docker.DockerClient | None = None
) -> list[str]:
    """Remove what snapshot runs of the lab that died left behind; what was done.

    A VM such a run had saved (stopped) runs again from the memory it saved, one it had
    paused resumes. The images of a run that died after its snapshot was complete (renamed
    into place) get their names; every other image of a dead run goes.
    """
    own_client = client is None
    client = client or docker.from_env()
    done = []
    try:
        for path, _ in _dead_partial_dirs(lab, where):
            if _bring_back_vms(lab, path, where):
                done.append(f"kept {path}: libvirt still saves a VM into it")
                continue
            shutil.rmtree(path, ignore_errors=True)
            done.append(f"removed {path}")
        for reference, node, name in _dead_partial_images(lab, client):
            image = client.images.get(reference)
            manifest = where.path(lab, name) / MANIFEST
            state = (
                json.loads(manifest.read_text())["nodes"].get(node, {})
                if manifest.is_file()
                else {}
            )
            if state.get("image_id") == image.id:
                image.tag(*state["image"].rsplit(":", 1))
                done.append(f"named {state['image']}")
            client.images.remove(reference, force=state.get("image_id") != image.id)
            done.append(f"removed {reference}")
    finally:
        if own_client:
            client.close()
    _remove_if_empty(where.lab_snapshots(lab))
    return done


def _bring_back_vms(lab: str, partial: Path, where: Snapshots) -> bool:
    """Make the VMs that a dead run left saved (stopped) or paused run again. True when
    libvirt still saves one into `partial` (killed mid-save): then nothing is touched yet."""
    for disk in sorted(partial.glob("*.qcow2")):
        node = disk.stem
        domain = container_name(lab, node)
        state = _domain_state(domain, where)
        if state == "absent":
            continue
        job = _run(*_virsh(where), "domjobinfo", domain)
        if re.search(r"^Job type:\s+(?!None)", job, re.MULTILINE):
            return True
        memory = partial / f"{node}.memory"
        if state == "shut off" and memory.exists():
            with contextlib.suppress(SnapshotError):  # the message is in the lab's VM dir
                _resume_saved_vm(lab, node, domain, memory, where)
        elif state == "paused":
            _run(*_virsh(where), "resume", domain)
    return False


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
                    # Taken by a run that died before naming its images: they have their id.
                    try:
                        client.images.get(state["image_id"]).tag(*state["image"].rsplit(":", 1))
                    except (docker.errors.ImageNotFound, KeyError):
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
    # The lab runs again under its own allocation (names, management addresses).
    lab = load_deployed_lab(lab_name, where.state_dir)
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
