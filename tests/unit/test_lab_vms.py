"""ltb_lab_vms's pure parts (plugins/module_utils/ltb_lab_vms.py): the domain XML rendered
from a VM node's inventory data, its startup files, and the checks before anything is made."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from ltb import module_utils
from ltb.inventory import node_vars
from ltb.topology import parse_lab

vms = module_utils.load("ltb_lab_vms")
LAB = parse_lab(
    "name: vg-unit\nnodes:\n  v: {kind: vm, resources: {cpus: 1.5, memory: 512MiB},"
    " interfaces: {eth1: {ipv4: 10.0.0.1/24}, eth2: {}}}\n  c: {}\n"
    "links:\n  - endpoints: [v:eth1, c:eth1]\n"
)
NODE = node_vars(LAB, LAB.node("v"))


def _where(tmp_path, default_image="ltb-vm", **settings):
    return vms.Hypervisor(
        "hv1", tmp_path, tmp_path / "images" / "vm", default_image, bridge="ltb-abc", **settings
    )


def _image(tmp_path, kernel=False):
    build = tmp_path / "images" / "vm" / "ltb-vm-1234"
    build.mkdir(parents=True)
    (build / "disk.qcow2").write_bytes(b"")
    if kernel:
        (build / "vmlinuz").write_bytes(b"")
    (tmp_path / "images" / "vm" / "ltb-vm").symlink_to(build)
    return build


def test_the_domain_xml_carries_the_nodes_names_resources_and_links_on_the_lab_bridge(tmp_path):
    build = _image(tmp_path, kernel=True)
    base, kernel = vms.image_base(NODE, _where(tmp_path))
    assert (base, kernel) == (str(build), True)
    xml, definition = vms.domain_xml("vg-unit", NODE, _where(tmp_path), "qemu", base, kernel)
    domain = ET.fromstring(xml)  # noqa: S314 (the module's own output)
    assert domain.get("type") == "qemu"
    assert domain.findtext("name") == NODE["vm"]["domain"]
    assert domain.findtext("uuid") == NODE["vm"]["uuid"]
    assert domain.findtext("memory") == str(512 * 1024 * 1024)
    assert domain.findtext("vcpu") == "2"  # whole vCPUs: 1.5 rounds up
    assert domain.findtext("os/kernel") == f"{build}/vmlinuz"
    assert domain.find("cpu") is None  # host-passthrough only with kvm
    meta = domain.find("metadata/{https://ltb.invalid/libvirt/1}node")
    assert (meta.get("lab"), meta.get("node"), meta.get("definition")) == (
        "vg-unit",
        "v",
        definition,
    )
    disks = [d.find("source").get("file") for d in domain.findall("devices/disk")]
    assert disks == [str(tmp_path / NODE["vm"]["disk"]), str(tmp_path / NODE["vm"]["config_drive"])]
    by_name = {i.find("target").get("dev"): i for i in domain.findall("devices/interface")}
    for interface in NODE["interfaces"]:
        found = by_name[interface["host_name"]]
        assert found.find("mac").get("address") == NODE["vm"]["macs"][interface["host_name"]]
        if interface["vlan"] is None:  # eth2 is on no link
            assert found.get("type") == "ethernet"
        else:
            assert found.get("type") == "bridge"
            assert found.find("source").get("bridge") == "ltb-abc"
            assert found.find("vlan/tag").get("id") == str(interface["vlan"])
            ids = NODE["vm"]["interface_ids"]
            assert found.find("virtualport/parameters").get("interfaceid") == ids[interface["name"]]
    assert sorted(by_name) == sorted(i["host_name"] for i in NODE["interfaces"])


def test_the_definition_hash_is_the_same_for_the_same_node_and_changes_with_it(tmp_path):
    where = _where(tmp_path)
    first = vms.domain_xml("vg-unit", NODE, where, "kvm", "/b", False)
    assert vms.domain_xml("vg-unit", NODE, where, "kvm", "/b", False) == first
    assert "<cpu mode='host-passthrough'/>" in first[0] and "<boot dev='hd'/>" in first[0]
    bigger = dict(NODE, memory_bytes=NODE["memory_bytes"] * 2)
    assert vms.domain_xml("vg-unit", bigger, where, "kvm", "/b", False)[1] != first[1]


def test_root_gets_the_platforms_and_users_keys_unless_the_topology_gives_the_file():
    files = vms.node_files(NODE, ["ssh-ed25519 AAA platform", "ssh-ed25519 BBB user"])
    assert files[-1] == {
        "path": "/root/.ssh/authorized_keys",
        "content": "ssh-ed25519 AAA platform\nssh-ed25519 BBB user\n",
        "mode": "0600",
    }
    own = dict(NODE, files=[{"path": "/root/.ssh/authorized_keys", "content": "mine\n"}])
    assert vms.node_files(own, ["ssh-ed25519 AAA platform"]) == [
        {"path": "/root/.ssh/authorized_keys", "content": "mine\n", "mode": "0644"}
    ]
    assert vms.node_files(dict(NODE, files=[]), []) == []


def test_the_checks_name_node_image_and_hypervisor_and_change_nothing(tmp_path):
    kind, errors = vms.check("vg-unit", [NODE], _where(tmp_path))
    assert kind is None
    assert any("node v: VM image 'ltb-vm' is not on hypervisor hv1" in e for e in errors), errors
    assert any("ltb_vm_accel is auto but hypervisor hv1 has no readable" in e for e in errors)
    assert not (tmp_path / "labs").exists()
    _image(tmp_path)
    (tmp_path / "vm-accel.json").write_text(json.dumps({"accel": "qemu"}))
    assert vms.check("vg-unit", [NODE], _where(tmp_path)) == ("qemu", [])
    assert vms.check("vg-unit", [NODE], _where(tmp_path, accel="kvm")) == ("kvm", [])
    gone = {"v": {"disk": str(tmp_path / "snap" / "v.qcow2")}}
    assert vms.check("vg-unit", [NODE], _where(tmp_path), gone)[1] == [
        f"node v: the snapshot's disk {tmp_path}/snap/v.qcow2 is gone"
    ]


@pytest.mark.parametrize("image", ["../etc", "a/b", ".hidden", ""])
def test_an_image_name_that_could_leave_the_image_directory_is_refused(tmp_path, image):
    node = dict(NODE, image=image or None)
    errors = vms.check("vg-unit", [node], _where(tmp_path, default_image=image or "../x"))[1]
    assert any("is not allowed" in e for e in errors), errors


def test_node_paths_outside_the_labs_directory_are_refused(tmp_path):
    node = dict(NODE, vm=dict(NODE["vm"], disk="labs/other/vms/v/disk.qcow2"))
    errors = vms.check("vg-unit", [node], _where(tmp_path))[1]
    assert any("disk" in e and "outside lab vg-unit's directory" in e for e in errors), errors
