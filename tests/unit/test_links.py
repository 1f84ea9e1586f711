"""Which ports a lab's wiring changes, and the one ovs-vsctl transaction that does it: the
controller's wanted ports (ltb.links) and the hypervisor's want/have (module_utils)."""

from __future__ import annotations

from ltb.links import port_specs
from ltb.module_utils import load
from ltb.topology import parse_lab

links = load("ltb_links")  # what ltb_lab_links runs on the hypervisor

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


def port(name: str, vlan: int, node: str, interface: str) -> dict:
    return {"name": name, "vlan": vlan, "node": node, "interface": interface, "link": "l"}


def test_every_management_and_linked_interface_gets_a_port_in_its_vlan():
    specs = {(s["node"], s["interface"]): s for s in port_specs(LAB)}
    assert set(specs) == {("a", "eth0"), ("a", "eth1"), ("b", "eth0"), ("b", "eth1")}
    assert specs["a", "eth0"]["vlan"] == specs["b", "eth0"]["vlan"] == 1
    assert specs["a", "eth1"]["vlan"] == specs["b", "eth1"]["vlan"] == 2
    assert specs["a", "eth1"]["name"] == LAB.node("a").interface("eth1").host_name
    assert specs["a", "eth1"]["link"] == "a:eth1--b:eth1" and specs["a", "eth0"]["link"] is None


def test_only_missing_or_different_ports_change():
    ok, moved, bare, absent = (
        port("p1", 2, "a", "eth1"),
        port("p2", 3, "b", "eth1"),
        port("p3", 1, "b", "eth0"),
        port("p4", 1, "a", "eth0"),
    )
    identity = {"ltb-lab": "wires", "ltb-interface": "eth1"}
    current = {
        "p1": (2, {**identity, "ltb-node": "a", "iface-id": "kept"}),
        "p2": (2, {**identity, "ltb-node": "b"}),
        "p3": (1, {}),  # e.g. a VM tap libvirt just added
    }
    changed = links.ports_to_change("wires", [ok, moved, bare, absent], current)
    assert changed == [moved, bare, absent]
    assert links.ports_to_change("wires", [ok], current) == []


def test_one_transaction_adds_tags_and_names_every_port():
    commands = links.port_commands("ltb-abc", "wires", [port("p1", 2, "a", "eth1")])
    assert commands == [
        ["--may-exist", "add-port", "ltb-abc", "p1"],
        ["set", "Port", "p1", "tag=2", "external_ids:ltb-lab=wires",
         "external_ids:ltb-node=a", "external_ids:ltb-interface=eth1"],
    ]  # fmt: skip


def test_the_diff_shows_each_port_as_it_is_and_as_it_will_be():
    before, after = links.port_states(port("p2", 3, "b", "eth1"), {"p2": (2, {"ltb-node": "b"})})
    assert before == "p2 (b:eth1): tag=2 lab=None node=b" and after == "p2 (b:eth1): tag=3"
    assert links.port_states(port("p4", 1, "a", "eth0"), {})[0] == "p4 (a:eth0): absent"
