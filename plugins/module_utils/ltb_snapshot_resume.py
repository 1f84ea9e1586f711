# LTB module_utils: the VMs of a lab restored in place from a snapshot with their memory, all
# in one module run on the hypervisor (ltb_snapshot action=resume). Standard library only.
#
# A restore in place (playbooks/restore.yml) keeps the lab's network, config drives and VM
# directories. This first removes every domain of the lab (remove's sweep, ltb_lab_absent),
# then, for each VM the snapshot saved with its memory, does what a bare restore does,
# several VMs at a time:
#   the snapshot's disk copied back (`cp --sparse=always`) -> the domain defined from its
#   persistent definition saved with the snapshot (`<node>.xml`, what deploy defined for the
#   same topology; a snapshot without it: the XML in its memory file) -> `virsh restore
#   --running` (libvirt plugs its ports into the lab bridge with their VLANs) -> its SSH
#   banner on the management address.
# A VM whose memory cannot be resumed (another QEMU, a device that cannot be attached) boots
# from the snapshot's disk instead and is waited for until its services have started
# (/run/ltb-node-ready, over SSH); the result says so and why, and restore_runtime warns that
# what was only in its memory is lost. VMs of disk-only snapshots are not touched here: they
# boot through deploy.yml's per-node plays.
from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils import ltb_snapshot as snapshots
from ansible.module_utils.ltb_lab_absent import RemoveError, domains_absent
from ansible.module_utils.ltb_ssh import ssh_argv

READY_FILE = "/run/ltb-node-ready"
DOMAIN_NAME = re.compile(r"<name>([^<]*)</name>")


def resumable(lab, name, nodes, where):
    """(node, snapshot disk, memory file, definition or None) of the given nodes the snapshot
    saved with memory."""
    snapshots.check_nodes(lab, nodes)
    manifest = snapshots.load_snapshot(lab, name, where)
    path = where.path(lab, name)
    found = []
    for node in nodes:
        saved = manifest["nodes"].get(node["name"])
        if node["kind"] == "vm" and saved is not None and "memory" in saved:
            xml = path / saved["xml"] if "xml" in saved else None
            found.append((node, path / saved["disk"], path / saved["memory"], xml))
    return found


def resume_vms(lab, name, nodes, where, node_prefix, timeout=300, check_mode=False):
    """Remove every domain of the lab (names starting with `node_prefix`), then restore in
    place every VM of `nodes` that snapshot `name` of `lab` saved with its memory. Returns
    (domains removed, per VM {'state': 'resumed' | 'booted', 'why': ..., 'seconds': {...}});
    in check mode what would be removed and {'state': 'would resume'} per VM."""
    todo = resumable(lab, name, nodes, where)
    for node, disk, memory, xml in todo:
        for part in (disk, memory, xml or memory):
            if not part.is_file():
                raise snapshots.SnapshotError(f"snapshot {name!r} of lab {lab!r} lacks {part}")
        vm_dir = (where.state_dir / node["disk"]).parent
        if not vm_dir.is_dir():
            raise snapshots.SnapshotError(
                f"lab {lab!r}, node {node['name']}: {vm_dir} is gone; only a lab that runs "
                "from the snapshot's topology is restored in place"
            )
        if not node["domain"].startswith(node_prefix):
            raise snapshots.SnapshotError(
                f"lab {lab!r}, node {node['name']}: domain {node['domain']} is not named "
                f"with the lab's prefix {node_prefix!r}"
            )
    try:
        removed = domains_absent([node_prefix], where.libvirt_uri, check_mode)
    except RemoveError as error:
        raise snapshots.SnapshotError(f"domains of lab {lab!r} not removed: {error}") from None
    if check_mode:
        return removed, {node["name"]: {"state": "would resume"} for node, *_ in todo}
    if not todo:
        return removed, {}
    with ThreadPoolExecutor(max_workers=min(where.parallel, len(todo))) as pool:
        futures = [
            pool.submit(_resume_one, node, disk, memory, xml, where, timeout)
            for node, disk, memory, xml in todo
        ]
        return removed, {
            node["name"]: future.result() for (node, *_), future in zip(todo, futures, strict=True)
        }


def _resume_one(node, disk, memory, xml, where, timeout):
    started = time.monotonic()
    seconds = {}
    snapshots._run("cp", "--sparse=always", str(disk), str(where.state_dir / node["disk"]))
    seconds["disk"] = round(time.monotonic() - started, 3)
    _define(node["domain"], memory, xml, where)
    step = time.monotonic()
    result = {"state": "resumed"}
    try:
        where.virsh("restore", str(memory), "--running", timeout=600)
    except snapshots.SnapshotError as error:
        # Its disk is of the same instant as the memory: it boots from that.
        where.virsh("start", node["domain"], timeout=120)
        result = {"state": "booted", "why": str(error)}
    seconds["restore"] = round(time.monotonic() - step, 3)
    step = time.monotonic()
    deadline = started + timeout
    _wait_for_banner(node, deadline)
    if result["state"] == "booted":
        _wait_until_ready(node, where, deadline)
    seconds["ssh"] = round(time.monotonic() - step, 3)
    result["seconds"] = seconds
    return result


def _define(domain, memory, xml_file, where):
    """Define the domain as deploy did (libvirt then restores the memory into it, and a boot
    uses it): from its saved persistent definition, else from its memory file's XML."""
    if xml_file is not None:
        source, xml = xml_file, xml_file.read_text()
    else:
        source, xml = memory, where.virsh("save-image-dumpxml", str(memory))
    found = DOMAIN_NAME.search(xml)
    if found is None or found[1] != domain:
        raise snapshots.SnapshotError(
            f"{source} defines domain {found[1] if found else '?'}, not {domain}"
        )
    handle, path = tempfile.mkstemp(prefix="ltb-domain-", suffix=".xml")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(xml)
        where.virsh("define", path)
    finally:
        os.unlink(path)


def _wait_for_banner(node, deadline):
    """Until the node's sshd answers with its banner on the management address."""
    while True:
        with (
            contextlib.suppress(OSError),
            socket.create_connection((node["address"], 22), timeout=5) as connection,
        ):
            connection.settimeout(max(1.0, min(30.0, deadline - time.monotonic())))
            if connection.recv(64).startswith(b"SSH-"):
                return
        if time.monotonic() > deadline:
            raise snapshots.SnapshotError(
                f"node {node['name']}: no SSH banner from {node['address']} in time"
            )
        time.sleep(0.25)


def _wait_until_ready(node, where, deadline):
    """Until a booted node has written that its services have started."""
    argv = ssh_argv(node["address"], "test", "-e", READY_FILE, key=where.ssh_key)
    while True:
        with contextlib.suppress(subprocess.TimeoutExpired):
            if subprocess.run(argv, capture_output=True, timeout=60, check=False).returncode == 0:
                return
        if time.monotonic() > deadline:
            raise snapshots.SnapshotError(
                f"node {node['name']}: booted from the snapshot's disk, but did not report "
                f"that its services started ({READY_FILE}) in time"
            )
        time.sleep(1)
