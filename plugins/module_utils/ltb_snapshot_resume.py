# LTB module_utils: the VMs of a lab restored in place from a snapshot, in the one module run
# of a restore in place (ltb_snapshot action=restore, module_utils/ltb_snapshot_restore.py).
# Standard library only.
#
# A restore in place keeps the lab's network, config drives and VM directories. After the
# lab's domains are removed, each VM does what a bare restore does (several VMs at a time):
#   the snapshot's disk copied back (`cp --sparse=always`) -> the domain defined from its
#   persistent definition saved with the snapshot (`<node>.xml`, what deploy defined for the
#   same topology; a snapshot without it: the XML in its memory file) -> `virsh restore
#   --running` (libvirt plugs its ports into the lab bridge with their VLANs) -> its SSH
#   banner on the management address.
# A VM saved without memory boots from the snapshot's disk (`virsh start`), and so does one
# whose memory cannot be resumed (another QEMU, a device that cannot be attached); both are
# waited for until their services have started (/run/ltb-node-ready, over SSH). The result
# says which and why; restore_runtime warns that what was only in memory is lost.
from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import time

from ansible.module_utils import ltb_snapshot as snapshots
from ansible.module_utils.ltb_lab_vms import define_domain
from ansible.module_utils.ltb_ssh import ssh_argv

READY_FILE = "/run/ltb-node-ready"
DOMAIN_NAME = re.compile(r"<name>([^<]*)</name>")


def restorable(lab, name, nodes, where):
    """The VMs of `nodes` that snapshot `name` restores in place, each (node, snapshot disk,
    memory file or None, definition or None), and why the others cannot be (a VM saved
    without memory by a snapshot older than its kept definition `<node>.xml`)."""
    snapshots.check_nodes(lab, nodes)
    manifest = snapshots.load_snapshot(lab, name, where)
    path = where.path(lab, name)
    found, why_not = [], []
    for node in nodes:
        saved = manifest["nodes"].get(node["name"])
        if node["kind"] != "vm" or saved is None:
            continue
        memory = path / saved["memory"] if "memory" in saved else None
        xml = path / saved["xml"] if "xml" in saved else None
        if memory is None and xml is None:
            why_not.append(
                f"node {node['name']}: the snapshot has neither its memory nor its definition"
            )
            continue
        found.append((node, path / saved["disk"], memory, xml))
    return found, why_not


def check_restorable(lab, name, todo, where, node_prefix):
    """Everything the VMs restored in place need is there; the errors name lab and node."""
    for node, disk, memory, xml in todo:
        for part in (disk, memory, xml):
            if part is not None and not part.is_file():
                raise snapshots.SnapshotError(
                    f"snapshot {name!r} of lab {lab!r}, node {node['name']}: {part} is missing"
                )
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


def restore_vm(node, disk, memory, xml, where, timeout):
    """One VM restored in place: its disk copied back, its domain defined, resumed from its
    memory (or, without memory or when that fails, booted from the disk), until it answers.
    {'state': 'resumed' | 'booted' (its memory could not be resumed: 'why') | 'started'
    (saved without memory), 'seconds': per step}."""
    started = time.monotonic()
    seconds = {}
    snapshots._run("cp", "--sparse=always", str(disk), str(where.state_dir / node["disk"]))
    seconds["disk"] = round(time.monotonic() - started, 3)
    _define(node["domain"], memory, xml, where)
    step = time.monotonic()
    if memory is None:
        where.virsh("start", node["domain"], timeout=120)
        result = {"state": "started"}
    else:
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
    if result["state"] != "resumed":
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
    define_domain(xml, where.virsh)


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
