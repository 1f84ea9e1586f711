# LTB module_utils: named snapshots of running labs on their hypervisor (the ltb_snapshot
# module's work). Standard library only; the controller gives each node as data (ltb_node's
# `snapshot`, from ltb.kinds): its name, kind and what the kind needs (container name; domain,
# disk, memory size, management address).
#
# A snapshot of lab L named N lives in `<state dir>/snapshots/L/N/`, outside the lab's own
# directory, so removing the lab keeps its snapshots. It holds:
# - `topology.lab.yml`: the topology the lab was deployed from (restore deploys it again);
# - `<node>.qcow2` for every VM node: a copy of the node's disk overlay (its changes to the
#   base image, which stays shared), and `<node>.memory`, its memory and device state
#   (paused, its memory alone written by `virsh snapshot-create`, in `virsh save`'s format;
#   the disk is copied while it is paused, so both are of the same instant; then it resumes).
#   Without memory (`vm_memory=False`) the disk is copied with the VM paused after a `sync`
#   in the guest, and a restored VM boots from it; `<node>.xml`, its domain's persistent
#   definition (`virsh dumpxml --inactive`);
# - `nodes.json`: the nodes as given (their names on the hypervisor), written first, so the
#   clean-up of a run that died finds the VMs it stopped;
# - `snapshot.json`: the manifest, written last. A directory without it is not a snapshot. It
#   also holds each node's runtime state (ltb_snapshot_runtime: routes set by hand, replayed
#   after restore; FRR's running config is written into the node's files first), except for
#   a VM saved with its memory, which holds that state: `{"in_memory": true}`.
# Every container node becomes a Docker image `ltb-snapshot/L/<node>:N` (a commit: its file
# system changes and its configuration; memory is not kept).
#
# A snapshot is atomic. It is built in a hidden directory `.N.partial-<owner>` and its images
# are committed as `ltb-partial-snapshot/L/<node>:N-<owner>` (the owner: the process taking
# it, pid and start time); the manifest is written last, the directory renamed into place, then
# the images get their final names. On a failure or SIGTERM everything it made is removed again
# and every node runs as before (a paused VM resumes; no VM is ever stopped). What a run killed
# outright (SIGKILL) left is a leftover of a dead owner: the next snapshot, delete or remove of
# the lab cleans it (`clean_leftovers`). ltb/snapshot.py (the controller's side: names,
# listing) agrees on these names; tests/unit/test_snapshot_module_utils.py pins that.
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from xml.etree import ElementTree

from ansible.module_utils import ltb_snapshot_runtime as runtime
from ansible.module_utils.ltb_lab_vms import with_xml_file
from ansible.module_utils.ltb_snapshot_docker import Docker, DockerError

MANIFEST = "snapshot.json"
NODES_FILE = "nodes.json"
TOPOLOGY_FILE = "topology.lab.yml"
IMAGE_REPOSITORY = "ltb-snapshot"
# Images of snapshots being taken (or of runs that died): never used by a restore.
PARTIAL_REPOSITORY = "ltb-partial-snapshot"
PARTIAL_DIR = re.compile(r"\.(?P<name>.+)\.partial-(?P<owner>[0-9]+(-[0-9]+)?)")
SNAPSHOT_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
# A node's runtime state in the manifest when its memory was saved: nothing to replay after
# it resumes; a node that boots instead (its memory could not be resumed) has lost it.
RUNTIME_IN_MEMORY = {"in_memory": True}


class SnapshotError(RuntimeError):
    """A snapshot that cannot be taken, found or restored; the message says why."""


class SnapshotCancelled(SnapshotError):
    """SIGTERM or SIGINT while a snapshot was taken."""


class Settings:
    """Where snapshots live and how the module reaches what it snapshots."""

    def __init__(
        self,
        state_dir,
        ssh_key,
        libvirt_uri="qemu:///system",
        min_free_bytes=512 * 1024**2,
        vm_memory=True,
        docker=None,
        parallel=4,
    ):
        self.state_dir = Path(state_dir)
        self.ssh_key = Path(ssh_key)
        self.libvirt_uri = libvirt_uri
        self.min_free_bytes = min_free_bytes
        self.vm_memory = vm_memory
        self.docker = docker or Docker()
        # Nodes saved at the same time (each commit or VM save is mostly I/O).
        self.parallel = max(1, parallel)

    def lab_snapshots(self, lab):
        return self.state_dir / "snapshots" / lab

    def path(self, lab, name):
        return self.lab_snapshots(lab) / name

    def lab_dir(self, lab):
        return self.state_dir / "labs" / lab

    def virsh(self, *args, timeout=60):
        return _run("virsh", "-c", self.libvirt_uri, *args, timeout=timeout)


def check_name(name):
    if not SNAPSHOT_NAME.fullmatch(name or ""):
        raise SnapshotError(
            f"snapshot name {name!r} is not allowed: use 1-63 lower-case letters, digits and "
            "'_.-', starting with a letter or digit"
        )


def image_name(lab, node, name):
    return f"{IMAGE_REPOSITORY}/{lab}/{node}:{name}"


def partial_image_name(lab, node, name, owner):
    return f"{PARTIAL_REPOSITORY}/{lab}/{node}:{name}-{owner}"


def _run(*argv, timeout=60):
    try:
        done = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=timeout)
    except subprocess.CalledProcessError as error:
        raise SnapshotError(f"{' '.join(argv)} failed: {error.stderr.strip()}") from None
    except subprocess.TimeoutExpired:
        raise SnapshotError(f"{' '.join(argv)} did not finish in {timeout:.0f} s") from None
    return done.stdout


# Owners of snapshots being taken ------------------------------------------------------------


def _start_time(pid):
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22, after the command name in parentheses (which may hold spaces).
    return stat.rsplit(")", 1)[1].split()[19]


def current_owner():
    """This process, as `<pid>-<start time>`: a pid alone may be reused after a crash."""
    return f"{os.getpid()}-{_start_time(os.getpid())}"


def owner_alive(owner):
    pid, _, started = owner.partition("-")
    if not pid.isdigit():
        return False  # not a name LTB gives: nobody owns it
    now = _start_time(int(pid))
    return now is not None and (not started or now == started)


class _Cancellation:
    """SIGTERM/SIGINT while a snapshot is taken end it, but never inside a step: a VM between
    paused for its save, or an image being committed, is finished first. Nodes
    are saved by several threads: the signal (handled in the main thread) raises there only
    when no thread is inside a step; else each thread raises when its step ends."""

    def __init__(self):
        self.signal = None
        self.depth = 0
        self.lock = threading.Lock()
        self.previous = {}

    def _handle(self, signum, _frame):
        self.signal = signum
        if self.depth == 0:
            self.check()

    def check(self):
        if self.signal is not None:
            raise SnapshotCancelled(f"cancelled by signal {signal.Signals(self.signal).name}")

    @contextlib.contextmanager
    def step(self):
        with self.lock:
            self.depth += 1
        try:
            yield
        finally:
            with self.lock:
                self.depth -= 1
        self.check()

    def __enter__(self):
        # Signal handlers can only be set in the main thread.
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *_):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


# Node kinds: what a snapshot does with a node of each kind ------------------------------------


class ContainerKind:
    """A Docker container: committed as an image (pausing it meanwhile)."""

    # Runtime state must be read: nothing else keeps a container's routes.
    @staticmethod
    def runtime_in_memory(where):
        return False

    @staticmethod
    def state(node, where):
        found = where.docker.container(node["container"])
        return found["State"]["Status"] if found else "absent"

    @staticmethod
    def bytes_needed(node, where):
        return 0  # a commit adds image layers, in Docker's storage

    @staticmethod
    def runtime_node(node, where):
        return runtime.ContainerNode(node["name"], node["container"], where.docker)

    @staticmethod
    def save(lab, node, name, owner, target, where, cancel):
        container = where.docker.container(node["container"])
        if container is None:
            raise SnapshotError(f"node {node['name']}: container {node['container']} is gone")
        # What the snapshot adds to the disk: the container's own layer.
        changes = where.docker.container_layer_bytes(container["Id"])
        repository, tag = partial_image_name(lab, node["name"], name, owner).rsplit(":", 1)
        with cancel.step():
            image = where.docker.commit(container["Id"], repository, tag)
        return {
            "kind": "container",
            "image": image_name(lab, node["name"], name),
            "image_id": image,
            "bytes": changes,
        }

    @staticmethod
    def plan(lab, name, node_name, saved, path, where, check_mode):
        if where.docker.image_id(saved["image"]) is None:
            # Taken by a run that died before naming its images: they have their id.
            if "image_id" not in saved or where.docker.image_id(saved["image_id"]) is None:
                raise SnapshotError(
                    f"snapshot {name!r} of lab {lab!r} lacks the image {saved['image']}"
                )
            if not check_mode:
                where.docker.tag(saved["image_id"], saved["image"])
        return {"image": saved["image"]}

    @staticmethod
    def delete(saved, where):
        where.docker.remove_image(saved["image"], force=True)

    @staticmethod
    def bring_back(lab, node, partial, where):
        """Docker resumes a container paused for a commit itself."""
        return False


class VmKind:
    """A libvirt domain, paused: its disk overlay copied, with or without its memory."""

    # Saved with its memory, a VM's runtime state (routes, FRR's running config) is in that
    # memory, and the disk copied at the same instant is consistent with it: it is not read
    # over SSH (1-15 s per TCG guest). Only a VM that then cannot resume misses it (booted
    # from the disk, see restore_runtime). Without memory it is read and replayed.
    @staticmethod
    def runtime_in_memory(where):
        return where.vm_memory

    @staticmethod
    def state(node, where):
        return _domain_state(node["domain"], where)

    @staticmethod
    def bytes_needed(node, where):
        disk = where.state_dir / node["disk"]
        if not disk.exists():
            return 0
        return disk.stat().st_blocks * 512 + (node["memory_bytes"] if where.vm_memory else 0)

    @staticmethod
    def runtime_node(node, where):
        return runtime.VmNode(node["name"], node["address"], where.ssh_key)

    @staticmethod
    def save(lab, node, name, owner, target, where, cancel):
        domain = node["domain"]
        source = where.state_dir / node["disk"]
        disk = target / f"{node['name']}.qcow2"
        # Its persistent definition, without what was plugged in live: a restore in place
        # defines the domain from it (ltb_snapshot_resume).
        xml = target / f"{node['name']}.xml"
        definition = where.virsh("dumpxml", "--inactive", domain)
        xml.write_text(definition)
        saved = {"kind": "vm", "disk": disk.name, "xml": xml.name}
        if where.vm_memory:
            # Paused, its memory is written out and its disk copied, so both are of one
            # instant; then it runs on in the same QEMU. (`virsh save` stops QEMU and needs a
            # `virsh restore` after: the VM was stopped 4 to 6 times longer, and a restore that
            # failed left it booted from its disk.)
            memory = target / f"{node['name']}.memory"
            with cancel.step():
                where.virsh("suspend", domain)
                try:
                    _save_memory(domain, memory, definition, where)
                    _run("cp", "--sparse=always", str(source), str(disk))
                finally:
                    where.virsh("resume", domain)
            saved["memory"] = memory.name
        else:
            # Flush the guest's page cache, so the paused disk holds what the guest has written.
            _run(*runtime.ssh_argv(node["address"], "sync", key=where.ssh_key), timeout=60)
            with cancel.step():
                where.virsh("suspend", domain)
                try:
                    _run("cp", "--sparse=always", str(source), str(disk))
                finally:
                    where.virsh("resume", domain)
        saved["bytes"] = sum(
            (target / saved[part]).stat().st_blocks * 512
            for part in ("disk", "memory")
            if part in saved
        )
        return saved

    @staticmethod
    def plan(lab, name, node_name, saved, path, where, check_mode):
        disk = path / saved["disk"]
        if not disk.is_file():
            raise SnapshotError(f"snapshot {name!r} of lab {lab!r} lacks the disk {disk}")
        info = json.loads(_run("qemu-img", "info", "--output=json", str(disk)))
        backing = info.get("full-backing-filename") or info.get("backing-filename")
        if backing and not Path(backing).is_file():
            raise SnapshotError(
                f"snapshot {name!r} of lab {lab!r}: the base image {backing} of node "
                f"{node_name} is gone"
            )
        planned = {"disk": str(disk)}
        if "memory" in saved:
            memory = path / saved["memory"]
            if not memory.is_file():
                raise SnapshotError(f"snapshot {name!r} of lab {lab!r} lacks the memory {memory}")
            planned["memory"] = str(memory)
        return planned

    @staticmethod
    def delete(saved, where):
        """Its files go with the snapshot's directory."""

    @staticmethod
    def bring_back(lab, node, partial, where):
        """Make a VM that a dead run left paused run again. True when libvirt still writes its
        memory into `partial` (killed mid-save): then nothing is touched yet."""
        domain = node["domain"]
        if _domain_state(domain, where) != "paused":
            return False
        job = where.virsh("domjobinfo", domain)
        if re.search(r"^Job type:\s+(?!None)", job, re.MULTILINE):
            return True
        where.virsh("resume", domain)
        return False


KINDS = {"container": ContainerKind, "vm": VmKind}


def kind_of(kind):
    try:
        return KINDS[kind]
    except KeyError:
        known = ", ".join(sorted(KINDS))
        raise SnapshotError(f"unknown node kind {kind!r} (known kinds: {known})") from None


def _domain_state(domain, where):
    try:
        return where.virsh("domstate", domain).strip()
    except SnapshotError:
        return "absent"


def _save_memory(domain, memory, domain_xml, where):
    """The paused domain's memory and device state written to `memory`, in the format of
    `virsh save` (`virsh restore` resumes it): an external memory snapshot without metadata
    that leaves every disk as it is (the overlay is copied instead) and the domain paused.
    `domain_xml` is libvirt's own definition of the domain (`virsh dumpxml`)."""
    disks = ElementTree.Element("disks")
    for target in ElementTree.fromstring(domain_xml).iterfind("devices/disk/target"):  # noqa: S314
        ElementTree.SubElement(disks, "disk", name=target.get("dev"), snapshot="no")
    request = ElementTree.Element("domainsnapshot")
    ElementTree.SubElement(request, "memory", snapshot="external", file=str(memory))
    request.append(disks)
    with_xml_file(
        ElementTree.tostring(request, encoding="unicode"),
        lambda path: where.virsh("snapshot-create", domain, path, "--no-metadata", timeout=600),
    )


# Taking a snapshot ------------------------------------------------------------------------------


def check_nodes(lab, nodes):
    """Each node given has a plain name (it names files), a known kind, and a disk (if any)
    in the lab's own directory; errors name the node."""
    for node in nodes:
        name = node.get("name")
        if not name or "/" in name or name.startswith("."):
            raise SnapshotError(f"lab {lab!r}: a node is given without a plain name ({node!r})")
        kind_of(node.get("kind"))
        disk = node.get("disk")
        if disk is not None and not _inside(Path(disk), Path("labs") / lab):
            raise SnapshotError(
                f"lab {lab!r}, node {name}: disk {disk!r} is not in the lab's directory"
            )


def _inside(path, directory):
    """True when relative `path` stays inside relative `directory` (no `..`, not absolute)."""
    return (
        not path.is_absolute()
        and ".." not in path.parts
        and path.parts[: len(directory.parts)] == directory.parts
    )


def _check_running(lab, nodes, where):
    stopped = [
        f"{node['name']} is {state}"
        for node in nodes
        if (state := kind_of(node["kind"]).state(node, where)) != "running"
    ]
    if stopped:
        raise SnapshotError(f"lab {lab!r} is not running: {', '.join(stopped)}")


def _check_space(lab, nodes, where):
    needed = sum(kind_of(node["kind"]).bytes_needed(node, where) for node in nodes)
    target = where.lab_snapshots(lab)
    free = shutil.disk_usage(target).free
    if free - needed < where.min_free_bytes:
        raise SnapshotError(
            f"not enough disk space for a snapshot of lab {lab!r} in {target}: "
            f"{free // 1024**2} MiB free, the VMs need up to {needed // 1024**2} MiB and "
            f"{where.min_free_bytes // 1024**2} MiB must stay free"
        )


def deployed_topology(lab, where):
    return where.lab_dir(lab) / TOPOLOGY_FILE


def take_snapshot(lab, name, nodes, where, progress=lambda _: None):
    """Snapshot every node of a running lab; return the manifest. Leftovers of earlier runs
    that died are cleaned first."""
    check_name(name)
    check_nodes(lab, nodes)
    deployed = deployed_topology(lab, where)
    if not deployed.is_file():
        raise SnapshotError(f"lab {lab!r} is not running here (it is not deployed)")
    final = where.path(lab, name)
    owner = current_owner()
    complete = False
    partial = where.lab_snapshots(lab) / f".{name}.partial-{owner}"
    started = time.monotonic()
    try:
        with _Cancellation() as cancel:
            for done in clean_leftovers(lab, nodes, where):
                progress(f"cleaned: {done}")
            checked = time.monotonic()
            if final.exists():
                raise SnapshotError(
                    f"lab {lab!r} already has a snapshot {name!r}: "
                    "delete it first or pick another name"
                )
            _check_running(lab, nodes, where)
            where.lab_snapshots(lab).mkdir(parents=True, exist_ok=True)
            _check_space(lab, nodes, where)
            partial.mkdir()
            (partial / NODES_FILE).write_text(json.dumps(nodes, indent=2) + "\n")
            shutil.copyfile(deployed, partial / TOPOLOGY_FILE)
            # Several nodes at a time; on a failure or a signal the nodes being saved finish
            # their step, the others are not started, and all that was made goes (below).
            executor = ThreadPoolExecutor(max_workers=min(where.parallel, len(nodes) or 1))
            try:
                futures = [
                    executor.submit(_save_node, lab, node, name, owner, partial, where, cancel)
                    for node in nodes
                ]
                saved = {
                    node["name"]: future.result()
                    for node, future in zip(nodes, futures, strict=True)
                }
            finally:
                # Waiting for the nodes being saved is a step: a signal does not cut it short.
                with cancel.step():
                    executor.shutdown(wait=True, cancel_futures=True)
            manifest = {
                "lab": lab,
                "name": name,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "seconds": round(time.monotonic() - started, 3),
                "cleanup_seconds": round(checked - started, 3),
                "nodes": saved,
            }
            (partial / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
            # The snapshot exists once renamed: from here on a signal no longer cancels it.
            # Its images get their names after (a run killed in between leaves that to
            # `clean_leftovers`; a restore finds them by id meanwhile).
            with cancel.lock:
                cancel.depth += 1
            os.rename(partial, final)
            complete = True
            try:
                _name_images(lab, name, owner, saved, where)
            except DockerError as error:
                progress(f"images of snapshot {name!r} keep their partial names for now: {error}")
            return manifest
    except BaseException as error:
        if complete:
            raise
        shutil.rmtree(partial, ignore_errors=True)
        _remove_if_empty(where.lab_snapshots(lab))
        # By name: also an image whose commit ended just as the run was cancelled.
        for reference, _, _ in _partial_images(lab, where, lambda o: o == owner):
            with contextlib.suppress(DockerError):
                where.docker.remove_image(reference, force=True)
        # ENOSPC, from Python or from a command (cp, virsh save) that reports it.
        if (isinstance(error, OSError) and error.errno == errno.ENOSPC) or (
            isinstance(error, SnapshotError) and os.strerror(errno.ENOSPC) in str(error)
        ):
            raise SnapshotError(
                f"out of disk space in {where.lab_snapshots(lab)} while taking snapshot "
                f"{name!r} of lab {lab!r}; nothing of it was kept ({error})"
            ) from None
        if isinstance(error, (DockerError, runtime.RuntimeStateError, SnapshotError)):
            raise SnapshotError(
                f"snapshot {name!r} of lab {lab!r} failed, nothing of it was kept: {error}"
            ) from None
        raise


def _save_node(lab, node, name, owner, partial, where, cancel):
    """One node's runtime state and files, as its kind saves them."""
    cancel.check()
    kind = kind_of(node["kind"])
    started = time.monotonic()
    # First, so that FRR's running config is in the files saved next; not at all where the
    # node's memory is saved with it (RUNTIME_IN_MEMORY: the manifest says so).
    if kind.runtime_in_memory(where):
        state = dict(RUNTIME_IN_MEMORY)
    else:
        state = runtime.save(kind.runtime_node(node, where))
    read = time.monotonic()
    cancel.check()
    saved = kind.save(lab, node, name, owner, partial, where, cancel)
    saved["runtime"] = state
    # Where a snapshot's time goes (bench/vm.py reports it).
    saved["seconds"] = {
        "runtime": round(read - started, 3),
        "save": round(time.monotonic() - read, 3),
    }
    return saved


def would_take(lab, name, nodes, where):
    """What a snapshot would do (check mode): refusals as errors, else a summary."""
    check_name(name)
    check_nodes(lab, nodes)
    if not deployed_topology(lab, where).is_file():
        raise SnapshotError(f"lab {lab!r} is not running here (it is not deployed)")
    if where.path(lab, name).exists():
        raise SnapshotError(
            f"lab {lab!r} already has a snapshot {name!r}: delete it first or pick another name"
        )
    _check_running(lab, nodes, where)
    return {"lab": lab, "name": name, "nodes": {node["name"]: node["kind"] for node in nodes}}


def _name_images(lab, name, owner, saved, where):
    """Give a complete snapshot's images their names, and drop their partial names."""
    for node, state in saved.items():
        if "image_id" not in state:
            continue
        where.docker.tag(state["image_id"], state["image"])
        where.docker.remove_image(partial_image_name(lab, node, name, owner))


# Leftovers of runs that died ------------------------------------------------------------------


def _dead_partial_dirs(lab, where):
    directory = where.lab_snapshots(lab)
    found = []
    if directory.is_dir():
        for entry in sorted(directory.iterdir()):
            match = PARTIAL_DIR.fullmatch(entry.name)
            if match and not owner_alive(match["owner"]):
                found.append((entry, match["name"]))
    return found


def _partial_images(lab, where, owned):
    """(partial image name, node, snapshot name) of the lab's partial images whose owner
    passes `owned`."""
    found = []
    for reference in where.docker.image_tags(f"{PARTIAL_REPOSITORY}/{lab}/*"):
        repository, _, tag = reference.rpartition(":")
        node = repository.rsplit("/", 1)[-1]
        name, _, started = tag.rpartition("-")
        name, _, pid = name.rpartition("-")
        if repository.startswith(f"{PARTIAL_REPOSITORY}/{lab}/") and owned(f"{pid}-{started}"):
            found.append((reference, node, name))
    return sorted(found)


def find_leftovers(lab, where):
    """What snapshot runs of the lab that died left behind: directories and images."""
    return [str(path) for path, _ in _dead_partial_dirs(lab, where)] + [
        reference
        for reference, _, _ in _partial_images(lab, where, lambda owner: not owner_alive(owner))
    ]


def _nodes_of(partial, nodes):
    """The nodes a dead run snapshotted: as it wrote them down, else as given now."""
    try:
        return json.loads((partial / NODES_FILE).read_text())
    except (OSError, ValueError):
        return nodes


def clean_leftovers(lab, nodes, where):
    """Remove what snapshot runs of the lab that died left behind; what was done.

    A VM such a run had saved (stopped) runs again from the memory it saved, one it had
    paused resumes. The images of a run that died after its snapshot was complete (renamed
    into place) get their names; every other image of a dead run goes.
    """
    done = []
    for path, _ in _dead_partial_dirs(lab, where):
        busy = False
        for node in _nodes_of(path, nodes):
            kind = KINDS.get(node.get("kind"))
            if kind is not None and kind.bring_back(lab, node, path, where):
                busy = True
        if busy:
            done.append(f"kept {path}: libvirt still saves a VM into it")
            continue
        shutil.rmtree(path, ignore_errors=True)
        done.append(f"removed {path}")
    for reference, node, name in _partial_images(lab, where, lambda o: not owner_alive(o)):
        image = where.docker.image_id(reference)
        manifest = where.path(lab, name) / MANIFEST
        state = (
            json.loads(manifest.read_text())["nodes"].get(node, {}) if manifest.is_file() else {}
        )
        if image is not None and state.get("image_id") == image:
            where.docker.tag(image, state["image"])
            done.append(f"named {state['image']}")
        where.docker.remove_image(reference, force=state.get("image_id") != image)
        done.append(f"removed {reference}")
    _remove_if_empty(where.lab_snapshots(lab))
    return done


# Listing, deleting, restoring -------------------------------------------------------------------


def list_snapshots(lab, where):
    """Complete snapshots of a lab, oldest first (a directory without manifest is not one)."""
    found = []
    directory = where.lab_snapshots(lab)
    if directory.is_dir():
        for entry in directory.iterdir():
            manifest = entry / MANIFEST
            if not entry.name.startswith(".") and manifest.is_file():
                found.append(json.loads(manifest.read_text()))
    return sorted(found, key=lambda m: (m["created"], m["name"]))


def load_snapshot(lab, name, where):
    check_name(name)
    manifest = where.path(lab, name) / MANIFEST
    if manifest.is_file():
        return json.loads(manifest.read_text())
    others = sorted(
        path.parent.parent.name
        for path in (where.state_dir / "snapshots").glob(f"*/{name}/{MANIFEST}")
    )
    if others:
        raise SnapshotError(
            f"snapshot {name!r} belongs to lab {', '.join(others)}, not to lab {lab!r}"
        )
    known = ", ".join(m["name"] for m in list_snapshots(lab, where)) or "none"
    raise SnapshotError(f"lab {lab!r} has no snapshot {name!r} (its snapshots: {known})")


def delete_snapshot(lab, name, where, check_mode=False):
    """Delete a snapshot and its images; False when there was none."""
    check_name(name)
    path = where.path(lab, name)
    if not path.exists():
        return False
    if check_mode:
        return True
    manifest_file = path / MANIFEST
    manifest = json.loads(manifest_file.read_text()) if manifest_file.is_file() else {"nodes": {}}
    for saved in manifest["nodes"].values():
        kind_of(saved["kind"]).delete(saved, where)
    shutil.rmtree(path)
    _remove_if_empty(where.lab_snapshots(lab))
    return True


def _remove_if_empty(directory):
    with contextlib.suppress(OSError):
        directory.rmdir()


def restore_plan(lab, name, where, check_mode=False):
    """What restoring a snapshot deploys, per node, after checking that all of it is there:
    {'topology': path, 'nodes': {node: {'image': ...} | {'disk': path[, 'memory': path]}},
    'topology_sha256': of the snapshot's topology, 'running_sha256': of the topology the lab
    runs from here (None when it is not deployed)}: the same, and the lab keeps its network."""
    manifest = load_snapshot(lab, name, where)
    path = where.path(lab, name)
    planned = {
        node: kind_of(saved["kind"]).plan(lab, name, node, saved, path, where, check_mode)
        for node, saved in manifest["nodes"].items()
    }
    deployed = deployed_topology(lab, where)
    return {
        "topology": str(path / TOPOLOGY_FILE),
        "nodes": planned,
        "topology_sha256": _sha256(path / TOPOLOGY_FILE),
        "running_sha256": _sha256(deployed) if deployed.is_file() else None,
    }


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def restore_runtime(lab, name, nodes, where, check_mode=False, resumed=()):
    """Give the nodes of a lab restored from a snapshot (and running again) the runtime state
    the snapshot kept; (the number of routes replayed per node, warnings). `nodes`: the lab as
    it runs again, under its own allocation (names, management addresses); `resumed`: names
    of nodes that resumed from the memory saved with the snapshot, which holds their runtime
    state. A node whose runtime state was only in its memory and that did not resume (booted
    from the snapshot's disk) has lost it: a warning names it."""
    check_nodes(lab, nodes)
    manifest = load_snapshot(lab, name, where)
    running = {node["name"]: node for node in nodes}
    replayed, warnings = {}, []
    try:
        for node_name, saved in manifest["nodes"].items():
            if node_name not in running:
                raise SnapshotError(
                    f"restore of snapshot {name!r} of lab {lab!r}: node {node_name} of the "
                    "snapshot is not in the lab's topology"
                )
            if node_name in resumed:
                replayed[node_name] = 0
                continue
            if saved.get("runtime", {}).get("in_memory"):
                replayed[node_name] = 0
                warnings.append(
                    f"node {node_name} did not resume from the memory saved in snapshot "
                    f"{name!r}: it booted from the snapshot's disk, and its state that was only "
                    "in memory (routes set by hand, FRR's unsaved config, files in /run) is "
                    "not replayed"
                )
                continue
            node = running[node_name]
            target = kind_of(node["kind"]).runtime_node(node, where)
            replayed[node_name] = runtime.replay(target, saved.get("runtime", {}), check_mode)
    except runtime.RuntimeStateError as error:
        raise SnapshotError(f"restore of snapshot {name!r} of lab {lab!r}: {error}") from None
    return replayed, warnings
