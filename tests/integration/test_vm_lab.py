"""VM nodes (kind: vm) next to containers on real libvirt, QEMU (TCG here) and Open vSwitch, and
snapshots of running labs: taken, listed, restored after remove, deleted, refused, and one whose
VM cannot be resumed from its memory (it boots from the snapshot's disk). One mixed lab serves
the module (a VM boot costs a minute or more under TCG)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from ltb import module_utils
from ltb.deployed import DEFAULT_LIBVIRT_URI, DEFAULT_STATE_DIR, lab_dir, load_deployed_lab
from ltb.inventory import node_vars
from ltb.snapshot import SnapshotError, delete_snapshot, find_leftovers, image_name, restore_plan
from ltb.ssh import ssh_argv
from ltb.topology import load_lab
from tests.integration.conftest import (
    RunningLab,
    assert_no_leftovers,
    deploy,
    remove,
    run_playbook,
    topology_file,
)

pytestmark = pytest.mark.integration

SSH_KEY = DEFAULT_STATE_DIR / "ssh" / "id_ed25519"
BASE_IMAGE = DEFAULT_STATE_DIR / "images" / "vm" / "ltb-vm" / "disk.qcow2"


def vm_ssh(path: Path, node: str, command: str) -> tuple[int, str]:
    """Run a command in a VM node over SSH on the lab's management network."""
    address = str(load_deployed_lab(load_lab(path).name).node(node).mgmt_ipv4.ip)
    done = subprocess.run(
        ssh_argv(address, command, key=SSH_KEY),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


@contextlib.contextmanager
def file_system_with_one_free_page(directory: Path) -> Iterator[None]:
    """A tmpfs on `directory`, full but for one page, while the block runs."""
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", str(directory)], check=True)
    try:
        (directory / ".filler").write_bytes(b"x" * 4096)
        yield
    finally:
        subprocess.run(["umount", str(directory)], check=True)
        directory.rmdir()


def failure_text(result) -> str:
    return "\n".join(result.failure_messages()) + result.stderr


def snapshot(path: Path, name: str, *extra: str):
    return run_playbook("snapshot.yml", path, "-e", f"snapshot={name}", *extra)


def refused_snapshot(lab: str, name: str, **settings) -> str:
    """Why the ltb_snapshot module's own code (in this process: no playbook run for a refusal)
    refuses to take snapshot `name` of the running lab; it must refuse."""
    impl = module_utils.load("ltb_snapshot")
    deployed = load_deployed_lab(lab)
    nodes = [node_vars(deployed, node)["snapshot"] for node in deployed.nodes]
    where = impl.Settings(DEFAULT_STATE_DIR, SSH_KEY, **settings)
    with pytest.raises(impl.SnapshotError) as refused:
        impl.take_snapshot(lab, name, nodes, where)
    return str(refused.value)


def snapshot_names(lab: str) -> list[str]:
    directory = DEFAULT_STATE_DIR / "snapshots" / lab
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.iterdir())


MIXED = "ct-mixed"


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, docker_client) -> Iterator[RunningLab]:
    """One mixed lab (two containers and a VM) for the module: a VM boot costs a minute or more
    under TCG. In file order: read, snapshotted, removed and restored, then a failing restore.
    Removed at the end, it leaves nothing, and the VM image it was made from is unchanged."""
    path = topology_file(tmp_path_factory.mktemp("mixed"), "mixed.lab.yml", MIXED)
    base_before = BASE_IMAGE.stat().st_mtime_ns
    try:
        deploy(path)
        yield RunningLab(path, docker_client)
    finally:
        remove(path)
        for name in snapshot_names(MIXED):  # those a failed snapshot test left
            snapshot(path, name, "-e", "snapshot_action=delete")
    assert_no_leftovers(MIXED)
    assert BASE_IMAGE.stat().st_mtime_ns == base_before, "a lab changed the base image"


def test_mixed_lab_pings_every_link_answers_ssh_and_leaves_nothing(mixed):
    path, lab = mixed.path, mixed
    assert lab.ping("c1", "10.203.1.2"), "container c1 -> vm over link 1"
    assert lab.ping("c2", "10.203.2.2"), "container c2 -> vm over link 2"
    code, out = vm_ssh(path, "vm", "hostname; ping -c1 -W2 10.203.1.1 && ping -c1 -W2 10.203.2.3")
    assert code == 0, out
    assert out.splitlines()[0] == "vm"
    code, out = vm_ssh(path, "vm", "cat /etc/ltb/hello.txt; ip -br addr show eth1")
    assert code == 0 and "hello from the topology" in out and "10.203.1.2/24" in out, out
    # Ansible reaches the VM like any node (kind registry: SSH to the management address).
    ping = subprocess.run(
        [".venv/bin/ansible", "-i", "inventory/", "-i", str(path), "vm", "-m", "ping"],
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ping.returncode == 0, ping.stdout + ping.stderr
    # A second deploy changes nothing: neither the VM (its disk, drive, domain are made in the
    # hypervisor's one module run per lab) nor anything else; nor does its check mode report
    # a change.
    again = run_playbook("deploy.yml", path)
    assert again.returncode == 0, failure_text(again)
    assert not again.changed(), again.changed()
    checked = run_playbook("deploy.yml", path, "--check", "--diff")
    assert checked.returncode == 0, failure_text(checked)
    assert not checked.changed(), checked.changed()
    # What is left after remove, and the base image: checked when the module's lab is removed.


def _process_started(pid: int) -> float:
    """When a process started (epoch seconds), from /proc: its start in clock ticks after boot."""
    ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    lines = Path("/proc/stat").read_text().splitlines()
    boot = next(int(line.split()[1]) for line in lines if line.startswith("btime"))
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def test_the_vm_starts_booting_before_the_containers_are_started(mixed):
    """deploy.yml starts a lab's VMs right after its network, so they boot while its
    containers deploy (a VM's boot is the longest part of a deploy)."""
    lab = load_lab(mixed.path)
    qemu = int(Path(f"/run/libvirt/qemu/{lab.container_name('vm')}.pid").read_text())
    vm_started = _process_started(qemu)
    for node in ("c1", "c2"):
        container = mixed.client.containers.get(lab.container_name(node))
        started = datetime.fromisoformat(container.attrs["State"]["StartedAt"][:26] + "+00:00")
        assert vm_started < started.timestamp(), (node, vm_started, started)


def test_remove_cleans_a_half_started_vm(lab_file, tmp_path):
    path = lab_file("mixed.lab.yml", "vm-half")
    lab = load_lab(path)
    domain = lab.container_name("vm")
    lab_dir = DEFAULT_STATE_DIR / "labs" / "vm-half"
    # What a deploy that failed after defining the domain leaves: a defined, stopped domain
    # and the lab's files.
    xml = tmp_path / "domain.xml"
    xml.write_text(
        f"<domain type='qemu'><name>{domain}</name><memory unit='MiB'>64</memory>"
        "<os><type arch='x86_64'>hvm</type></os></domain>"
    )
    subprocess.run(["virsh", "-c", "qemu:///system", "define", str(xml)], check=True)
    (lab_dir / "vms" / "vm").mkdir(parents=True)
    (lab_dir / "vms" / "vm" / "disk.qcow2").write_bytes(b"")
    remove(path)
    assert_no_leftovers("vm-half")


FRR_STATIC = "ip route 10.77.0.0/16 10.203.1.2"


def test_snapshot_and_restore_give_back_files_and_routes_of_containers_and_vms(
    mixed, lab_file, docker_client
):
    path, lab = mixed.path, mixed
    other = lab_file("mixed.lab.yml", "ct-snap-other")
    try:
        assert lab.exec("c1", "sh", "-c", "echo before > /root/state.txt")[0] == 0
        assert vm_ssh(path, "vm", "echo before > /root/state.txt")[0] == 0
        assert vm_ssh(path, "vm", "echo edited > /etc/ltb/hello.txt")[0] == 0
        # Runtime state in no file: routes added by hand, and FRR config that is not written.
        assert lab.exec("c1", "ip", "route", "add", "10.99.0.0/16", "via", "10.203.1.2")[0] == 0
        assert vm_ssh(path, "vm", "ip route add 10.98.0.0/16 via 10.203.2.3")[0] == 0
        frr = (
            "sed -i 's/^ospfd=no/ospfd=yes/' /etc/frr/daemons && /usr/lib/frr/frrinit.sh start"
            f" >/dev/null && vtysh -c 'configure terminal' -c '{FRR_STATIC}'"
        )
        assert lab.exec("c1", "sh", "-c", frr)[0] == 0
        # Only in the VM's memory (/run is a tmpfs): kept by s1 (memory), not by s2 (disk).
        assert vm_ssh(path, "vm", "echo memory > /run/in-memory.txt")[0] == 0

        # Refused by the module's code (run here: a playbook run each would cost seconds): bad
        # names, too little disk space; none of them leaves anything.
        assert "is not allowed" in refused_snapshot(MIXED, "Bad/Name")
        full = refused_snapshot(MIXED, "full", min_free_bytes=1099511627776000)
        assert "not enough disk space" in full
        assert snapshot_names(MIXED) == []
        assert not docker_client.images.list(name=image_name(MIXED, "c1", "full"))

        domain = load_deployed_lab(MIXED).container_name("vm")
        running = qemu_pid(domain)
        taken = snapshot(path, "s1")
        assert taken.returncode == 0, failure_text(taken)
        # Paused for its save, the VM runs on in the same QEMU: it never stops.
        assert qemu_pid(domain) == running
        assert "already has a snapshot 's1'" in refused_snapshot(MIXED, "s1")
        taken = snapshot(path, "s2", "-e", "snapshot_vm_memory=false")
        assert taken.returncode == 0, failure_text(taken)
        assert (DEFAULT_STATE_DIR / "snapshots" / MIXED / "s1" / "vm.memory").is_file()
        assert not (DEFAULT_STATE_DIR / "snapshots" / MIXED / "s2" / "vm.memory").exists()
        listed = snapshot(path, "", "-e", "snapshot_action=list")
        assert listed.returncode == 0 and "ct-mixed: s1, s2" in json.dumps(listed.output)
        # The VMs run on after their memory was saved.
        assert vm_ssh(path, "vm", "cat /run/in-memory.txt") == (0, "memory\n")

        # Changed after the snapshot; a restore removes the lab first, and its snapshots stay.
        assert lab.exec("c1", "sh", "-c", "echo after > /root/state.txt")[0] == 0
        assert vm_ssh(path, "vm", "echo after > /root/state.txt")[0] == 0

        saved = DEFAULT_STATE_DIR / "snapshots" / MIXED / "s1" / "topology.lab.yml"
        wrong_lab = run_playbook("restore.yml", other, "-e", "snapshot=s1")
        assert wrong_lab.returncode != 0
        assert "belongs to lab ct-mixed, not to lab 'ct-snap-other'" in failure_text(wrong_lab)
        assert_no_leftovers("ct-snap-other")
        with pytest.raises(SnapshotError, match="has no snapshot 'nope'"):
            restore_plan(MIXED, "nope")  # what restore.yml's first play runs

        # s2 has no memory: the VM boots from its disk, and its routes are set again.
        restored = run_playbook("restore.yml", saved, "-e", "snapshot=s2")
        assert restored.returncode == 0, failure_text(restored)
        assert lab.exec("c1", "cat", "/root/state.txt") == (0, "before\n")
        assert vm_ssh(path, "vm", "cat /root/state.txt /etc/ltb/hello.txt") == (
            0,
            "before\nedited\n",
        )
        assert vm_ssh(path, "vm", "cat /run/in-memory.txt")[0] != 0
        assert lab.ping("c1", "10.203.1.2") and lab.ping("c2", "10.203.2.2")
        assert "10.99.0.0/16 via 10.203.1.2 dev eth1" in lab.exec("c1", "ip", "route")[1]
        assert "10.98.0.0/16 via 10.203.2.3 dev eth2" in vm_ssh(path, "vm", "ip route")[1]
        assert FRR_STATIC in lab.exec("c1", "vtysh", "-c", "show running-config")[1]
        assert snapshot_names(MIXED) == ["s1", "s2"]  # the removal kept them

        # s1 has the VM's memory: it resumes where it was, restored in place by one module run
        # (ltb_snapshot action=restore), with nothing lost to warn about.
        restored = run_playbook("restore.yml", saved, "-e", "snapshot=s1")
        assert restored.returncode == 0, failure_text(restored)
        output = json.dumps(restored.output)
        assert '"state": "resumed"' in output, output[-3000:]
        assert "from the snapshot's disk instead" not in output
        assert "did not resume" not in output
        assert vm_ssh(path, "vm", "cat /root/state.txt /run/in-memory.txt") == (
            0,
            "before\nmemory\n",
        )
        assert lab.ping("c1", "10.203.1.2") and lab.ping("c2", "10.203.2.2")
        assert "10.98.0.0/16 via 10.203.2.3 dev eth2" in vm_ssh(path, "vm", "ip route")[1]

        # A VM saved with its memory is not read over SSH (its memory holds its runtime state,
        # and it costs seconds in a TCG guest): one that cannot be reached (like a vendor's
        # OS) gets a snapshot, and the manifest says where its state is.
        vm_ssh(path, "vm", "pkill -x sshd")
        taken = snapshot(path, "s3")
        assert taken.returncode == 0, failure_text(taken)
        manifest = DEFAULT_STATE_DIR / "snapshots" / MIXED / "s3" / "snapshot.json"
        saved_vm = json.loads(manifest.read_text())["nodes"]["vm"]
        assert saved_vm["runtime"] == {"in_memory": True}
        assert saved_vm["seconds"]["runtime"] < 0.1

        # One deleted by the playbook, the others by the same code here.
        deleted = snapshot(path, "s1", "-e", "snapshot_action=delete")
        assert deleted.returncode == 0, failure_text(deleted)
        assert delete_snapshot(MIXED, "s2") and delete_snapshot(MIXED, "s3")
        assert snapshot_names(MIXED) == []
        assert not docker_client.images.list(name=image_name(MIXED, "c1", "s1"))
    finally:
        for name in snapshot_names(MIXED):
            snapshot(path, name, "-e", "snapshot_action=delete")


GONE_BRIDGE = "ct-gone-br"


def _ovs(*args: str) -> None:
    subprocess.run(["ovs-vsctl", *args], check=True, capture_output=True)


def _virsh(*args: str) -> str:
    return subprocess.run(
        ["virsh", "-c", DEFAULT_LIBVIRT_URI, *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def qemu_pid(domain: str) -> int:
    return int((Path("/run/libvirt/qemu") / f"{domain}.pid").read_text())


def test_memory_that_cannot_be_resumed_boots_the_vm_from_the_snapshots_disk(mixed, tmp_path):
    """A snapshot fault (with tests/hostile/test_snapshot_faults.py by its subject), on this
    module's lab after the snapshot test: a VM boot costs a minute."""
    path = mixed.path
    if not lab_dir(MIXED).exists():  # the snapshot test failed with the lab removed
        deploy(path)
    nic = tmp_path / "nic.xml"
    nic.write_text(
        f"<interface type='bridge'><source bridge='{GONE_BRIDGE}'/>"
        "<virtualport type='openvswitch'/><model type='virtio'/></interface>"
    )
    try:
        domain = load_deployed_lab(MIXED).container_name("vm")
        # A real fault of resuming only: the running VM gets a NIC plugged in live (not in its
        # persistent definition) on a bridge that is then deleted. Its memory is saved with
        # that NIC; `virsh restore` must attach it again and fails ("Cannot get interface
        # MTU"), while booting from the domain's definition still works.
        _ovs("add-br", GONE_BRIDGE, "--", "set", "Bridge", GONE_BRIDGE, "datapath_type=netdev")
        _virsh("attach-device", domain, str(nic), "--live")
        _ovs("del-br", GONE_BRIDGE)

        # The snapshot never stops the VM: it runs on in the same QEMU.
        running = qemu_pid(domain)
        taken = snapshot(path, "gone-nic")
        assert taken.returncode == 0, failure_text(taken)
        assert qemu_pid(domain) == running and _virsh("domstate", domain) == "running"
        assert find_leftovers(MIXED) == []

        saved = DEFAULT_STATE_DIR / "snapshots" / MIXED / "gone-nic" / "topology.lab.yml"
        restored = run_playbook("restore.yml", saved, "-e", "snapshot=gone-nic")
        assert restored.returncode == 0, failure_text(restored)
        output = json.dumps(restored.output)
        assert "could not be restored" in output and "from the snapshot's disk instead" in output
        assert '"state": "booted"' in output, output[-3000:]
        # Booted: its sshd, which the snapshot test before ended, runs again.
        assert vm_ssh(path, "vm", "hostname") == (0, "vm\n")
        assert mixed.ping("c1", "10.203.1.2") and mixed.ping("c2", "10.203.2.2")
    finally:
        _ovs("--if-exists", "del-br", GONE_BRIDGE)
        for name in snapshot_names(MIXED):
            snapshot(path, name, "-e", "snapshot_action=delete")
    # Nothing left once the lab is removed: checked by the module's fixture.


def test_snapshot_that_fills_the_disk_leaves_nothing(lab_file, docker_client):
    """The free-space check passes (nothing big to save), then the disk really fills up: the
    topology fits in the last page, the container images are committed, and the manifest
    does not fit."""
    path = lab_file("pair.lab.yml", "snap-full")
    try:
        deploy(path)
        with file_system_with_one_free_page(DEFAULT_STATE_DIR / "snapshots" / "snap-full"):
            full = snapshot(path, "s1", "-e", "snapshot_min_free_bytes=0")
            assert full.returncode != 0
            assert "out of disk space in /var/lib/ltb/snapshots/snap-full" in failure_text(full)
            assert snapshot_names("snap-full") == [".filler"]
        assert not docker_client.images.list(name="ltb-snapshot/snap-full/*")
        assert RunningLab(path, docker_client).ping("a", "10.201.12.2")
    finally:
        remove(path)
    assert_no_leftovers("snap-full")


def test_snapshot_of_a_lab_that_is_not_running_is_refused(lab_file):
    path = lab_file("mixed.lab.yml", "snap-absent")
    result = snapshot(path, "s1")
    assert result.returncode != 0
    assert "lab 'snap-absent' is not running here" in failure_text(result)
    assert snapshot_names("snap-absent") == []
