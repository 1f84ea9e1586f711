"""Which ports a mirror selects, and the names it gets, from the lab model alone."""

from dataclasses import replace

import pytest

from ltb.mirror import MirrorError, mirror_spec
from ltb.topology import parse_lab

LAB = parse_lab(
    """
name: m
nodes:
  a: {interfaces: {eth1: {}, eth2: {}}}
  b: {interfaces: {eth1: {}}}
  c: {interfaces: {eth1: {}}}
links:
  - endpoints: [a:eth1, b:eth1, c:eth1]
"""
)


def test_link_mirror_selects_every_port_of_the_link():
    spec = mirror_spec(LAB, "link", "b:eth1")
    ports = {LAB.node(n).interface("eth1").host_name for n in "abc"}
    assert set(spec.ports) == ports
    assert spec.description == "link a:eth1--b:eth1--c:eth1"
    assert spec.vlan == LAB.links[0].vlan
    assert spec.name == "link-b-eth1"


def test_interface_mirror_selects_one_port():
    spec = mirror_spec(LAB, "interface", "a:eth1", name="mine")
    assert spec.ports == (LAB.node("a").interface("eth1").host_name,)
    assert spec.ovs_name == "ltb/m/mine"


def test_mirror_ports_fit_linux_names_and_carry_the_lab_alias():
    spec = mirror_spec(LAB, "link", "a:eth1")
    assert len(spec.output_port) <= 15 and len(spec.capture_interface) <= 15
    assert spec.output_port != spec.capture_interface
    assert spec.alias.startswith("ltb:m:")


def _two_node_lab(name: str):
    return parse_lab(
        f"name: {name}\nnodes:\n  a: {{interfaces: {{eth1: {{}}}}}}\n  b: {{}}\n"
        "links:\n  - endpoints: [a:eth1, b:eth1]\n"
    )


def test_mirror_names_of_different_labs_never_meet_in_ovs():
    # Lab `a` with mirror `b-c` and lab `a-b` with mirror `c` shared `ltb-a-b-c`.
    one = mirror_spec(_two_node_lab("a"), "interface", "a:eth1", name="b-c")
    two = mirror_spec(_two_node_lab("a-b"), "interface", "a:eth1", name="c")
    assert one.ovs_name != two.ovs_name


def test_mirror_ports_take_the_labs_own_tag():
    lab = replace(LAB, tag="abc123")
    spec = mirror_spec(lab, "link", "a:eth1")
    assert spec.output_port.startswith("xabc123") and spec.capture_interface.startswith("cabc123")
    assert spec.external_ids == {"ltb-lab": "m", "ltb-mirror": "link-a-eth1"}


@pytest.mark.parametrize(
    ("scope", "endpoint", "name", "message"),
    [
        ("link", "z:eth1", None, "has no node 'z' (nodes: a, b, c)"),
        ("link", "a:eth9", None, "has no lab interface 'eth9' (its interfaces: eth1, eth2)"),
        ("link", "a:eth2", None, "interface a:eth2 is on no link"),
        ("vlan", "a:eth1", None, "scope must be one of link, interface"),
        ("link", "a:eth1", "Bad Name", "mirror name 'Bad Name' is not allowed"),
    ],
)
def test_bad_mirror_requests_name_what_is_wrong(scope, endpoint, name, message):
    with pytest.raises(MirrorError, match=message.replace("(", r"\(").replace(")", r"\)")):
        mirror_spec(LAB, scope, endpoint, name)


# What ltb_mirror does on the hypervisor: the same spec from the ports the controller passes.
def test_the_hypervisor_selects_the_same_mirror_from_the_lab_ports():
    from ltb.links import port_specs
    from ltb.module_utils import load

    ports = port_specs(LAB)
    on_hypervisor = load("ltb_mirror").mirror_spec(
        LAB.name, LAB.tag, LAB.bridge, ports, "link", "b:eth1"
    )
    assert on_hypervisor == mirror_spec(LAB, "link", "b:eth1")
    with pytest.raises(MirrorError, match="has no lab interface 'eth0' on a link"):
        load("ltb_mirror").mirror_spec(LAB.name, LAB.tag, LAB.bridge, ports, "link", "a:eth0")
