"""Which ports a lab's wiring changes, and the one ovs-vsctl transaction that does it."""

from __future__ import annotations

from ltb.links import PortSpec, port_specs, ports_to_change, transaction
from ltb.topology import parse_lab

LAB = parse_lab(
    """
name: wires
nodes:
  a: {interfaces: {eth1: {ipv4: 10.9.1.1/24}}}
  b: {interfaces: {eth1: {ipv4: 10.9.1.2/24}, eth2: {}}}
links:
  - endpoints: [a:eth1, b:eth1]
""",
    "test",
)


def test_every_management_and_linked_interface_gets_a_port_in_its_vlan():
    specs = {(s.node, s.interface): s for s in port_specs(LAB)}
    assert set(specs) == {("a", "eth0"), ("a", "eth1"), ("b", "eth0"), ("b", "eth1")}
    assert specs["a", "eth0"].vlan == specs["b", "eth0"].vlan == 1
    assert specs["a", "eth1"].vlan == specs["b", "eth1"].vlan == 2
    assert specs["a", "eth1"].name == LAB.node("a").interface("eth1").host_name


def test_only_missing_or_different_ports_change():
    ok, moved, bare, absent = (
        PortSpec("p1", 2, "a", "eth1"),
        PortSpec("p2", 3, "b", "eth1"),
        PortSpec("p3", 1, "b", "eth0"),
        PortSpec("p4", 1, "a", "eth0"),
    )
    identity = {"ltb-lab": "wires", "ltb-interface": "eth1"}
    current = {
        "p1": (2, {**identity, "ltb-node": "a", "iface-id": "kept"}),
        "p2": (2, {**identity, "ltb-node": "b"}),
        "p3": (1, {}),  # e.g. a VM tap libvirt just added
    }
    assert ports_to_change("wires", [ok, moved, bare, absent], current) == [moved, bare, absent]
    assert ports_to_change("wires", [ok], current) == []


def test_one_transaction_adds_tags_and_names_every_port():
    args = transaction("ltb-abc", "wires", [PortSpec("p1", 2, "a", "eth1")])
    assert args == [
        "--", "--may-exist", "add-port", "ltb-abc", "p1",
        "--", "set", "Port", "p1", "tag=2",
        "external_ids:ltb-lab=wires", "external_ids:ltb-node=a", "external_ids:ltb-interface=eth1",
    ]  # fmt: skip
