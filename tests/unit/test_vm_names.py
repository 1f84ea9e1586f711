"""Names a VM node makes on its hypervisor come from ltb.model, once, and reach the vm_node role
and the ltb_snapshot module through the inventory; the hypervisor-side snapshot code knows
every kind the controller registers."""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible.plugins.filter.core import to_uuid

from ltb import kinds, module_utils
from ltb.inventory import lab_network_vars, node_vars
from ltb.model import vm_mac_address
from ltb.topology import parse_lab

ROOT = Path(__file__).parents[2]
LAB = parse_lab(
    "name: names\nnodes:\n  v: {kind: vm, interfaces: {eth1: {}, eth2: {}}}\n  c: {}\n"
    "links:\n  - endpoints: [v:eth1, c:eth1]\n"
)
snapshot_impl = module_utils.load("ltb_snapshot")


def _config_drive():
    # The module's building code, shared with ltb_lab_vms.
    return module_utils.load("ltb_config_drive")


def test_vm_uuids_are_those_ansible_gave_so_saved_vms_resume_into_their_domain():
    vm = node_vars(LAB, LAB.node("v"))["vm"]
    assert vm["uuid"] == to_uuid("ltb:names:v")
    assert vm["interface_ids"] == {
        name: to_uuid(f"ltb:names:v:{name}") for name in ("eth0", "eth1", "eth2")
    }


def test_a_vm_node_carries_its_domain_files_and_a_mac_for_every_interface():
    data = node_vars(LAB, LAB.node("v"))
    vm = data["vm"]
    assert vm["domain"] == data["container_name"] == "ltb-names.v"
    assert vm["disk"] == "labs/names/vms/v/disk.qcow2"
    assert vm["config_drive"] == "labs/names/vms/v/config.tar"
    assert vm["console_log"] == "labs/names/vms/v/console.log"
    assert all(not vm[key].startswith("/") for key in ("dir", "disk", "config_drive"))
    host_names = [i["host_name"] for i in data["interfaces"]]
    assert sorted(vm["macs"]) == sorted(host_names)
    # The config drive tells the guest the same MACs the domain XML gives the NICs.
    drive = _config_drive()
    assert all(vm["macs"][name] == drive.mac_address(name) for name in host_names)
    assert len(set(vm["macs"].values())) == len(host_names)
    assert vm_mac_address(host_names[0]).startswith("52:54:00:")


def test_a_container_node_has_no_vm_names_and_its_snapshot_names_its_container():
    data = node_vars(LAB, LAB.node("c"))
    assert "vm" not in data
    assert data["snapshot"] == {"name": "c", "kind": "container", "container": "ltb-names.c"}


def test_a_vm_snapshot_gets_its_domain_disk_memory_and_address_from_the_model():
    snapshot = node_vars(LAB, LAB.node("v"))["snapshot"]
    assert snapshot == {
        "name": "v",
        "kind": "vm",
        "domain": "ltb-names.v",
        "disk": "labs/names/vms/v/disk.qcow2",
        "memory_bytes": kinds.get("vm").default_memory_bytes,
        "address": str(LAB.node("v").mgmt_ipv4.ip),
    }


@pytest.mark.parametrize("kind", sorted(kinds.KINDS))
def test_the_snapshot_module_knows_every_kind_the_controller_registers(kind):
    node = next((n for n in LAB.nodes if n.kind == kind), None)
    if node is None:
        pytest.skip(f"no {kind} node in the lab")
    assert node_vars(LAB, node)["snapshot"]["kind"] in snapshot_impl.KINDS


def test_a_node_of_an_unknown_kind_is_refused_by_name():
    with pytest.raises(snapshot_impl.SnapshotError, match=r"unknown node kind 'router'.*container"):
        snapshot_impl.check_nodes("lab", [{"name": "r1", "kind": "router"}])
    with pytest.raises(snapshot_impl.SnapshotError, match="without a plain name"):
        snapshot_impl.check_nodes("lab", [{"kind": "vm"}])


def test_remove_sweeps_domains_by_a_prefix_of_every_node_name_of_the_lab_and_no_other():
    prefix = lab_network_vars(LAB, "hv1", "")["node_prefix"]
    assert all(node_vars(LAB, n)["container_name"].startswith(prefix) for n in LAB.nodes)
    other = parse_lab("name: names2\nnodes:\n  v: {kind: vm}\n")
    assert not node_vars(other, other.node("v"))["vm"]["domain"].startswith(prefix)


@pytest.mark.parametrize(
    "node",
    [
        {"name": "../r1", "kind": "container", "container": "x"},
        {"name": ".hidden", "kind": "container", "container": "x"},
        {"name": "v", "kind": "vm", "disk": "/etc/shadow"},
        {"name": "v", "kind": "vm", "disk": "labs/lab/../other/vms/v/disk.qcow2"},
        {"name": "v", "kind": "vm", "disk": "labs/other/vms/v/disk.qcow2"},
    ],
)
def test_a_node_whose_name_or_disk_leaves_the_lab_directory_is_refused(node):
    with pytest.raises(snapshot_impl.SnapshotError, match="lab 'lab'"):
        snapshot_impl.check_nodes("lab", [node])


def test_the_nodes_the_inventory_gives_pass_the_module_checks():
    snapshot_impl.check_nodes(LAB.name, [node_vars(LAB, n)["snapshot"] for n in LAB.nodes])
