"""The lab model resolved from a valid topology: names, addresses, VLANs and defaults."""

from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path

import pytest

from ltb import model
from ltb.topology import TopologyError, load_lab, parse_lab

EXAMPLE = Path(__file__).parents[2] / "examples" / "ospf-triangle.lab.yml"


def test_example_lab_resolves_nodes_links_and_addresses():
    lab = load_lab(EXAMPLE)
    assert [n.name for n in lab.nodes] == ["r1", "r2", "r3", "h1", "h2"]
    assert [str(e) for e in lab.links[3].endpoints] == ["h1:eth1", "h2:eth1", "r3:eth3"]
    r3 = lab.node("r3")
    assert r3.interface("eth3").ipv4 == IPv4Interface("10.0.100.3/24")
    assert r3.interface("eth3").vlan == lab.links[3].vlan
    assert lab.node("h1").memory_bytes == 128 * 1024**2
    assert lab.node("h1").cpus == 0.5
    assert lab.node("r1").image is None  # the platform's default image


def test_every_link_has_its_own_vlan_apart_from_management():
    lab = load_lab(EXAMPLE)
    vlans = [link.vlan for link in lab.links]
    assert len(set(vlans)) == len(vlans)
    assert model.MGMT_VLAN not in vlans


def test_interfaces_named_only_in_links_are_created_without_addresses():
    lab = parse_lab("name: t\nnodes: {a: {}, b: {}}\nlinks: [{endpoints: [a:eth1, b:eth7]}]\n")
    assert lab.node("b").interface("eth7").ipv4 is None
    assert lab.node("b").interface("eth7").vlan == model.FIRST_LINK_VLAN


def test_management_addresses_follow_the_gateway_in_node_order():
    lab = parse_lab("name: t\nmgmt: {ipv4_subnet: 192.168.7.0/24}\nnodes: {a: {}, b: {}}\n")
    assert lab.mgmt_subnet == IPv4Network("192.168.7.0/24")
    assert str(lab.mgmt_gateway) == "192.168.7.1/24"
    assert [str(n.mgmt_ipv4) for n in lab.nodes] == ["192.168.7.2/24", "192.168.7.3/24"]


def test_default_management_subnet_is_stable_and_in_the_pool():
    subnet = model.default_mgmt_subnet("ospf-triangle")
    assert subnet == model.default_mgmt_subnet("ospf-triangle")
    assert subnet.subnet_of(model.MGMT_POOL)
    assert subnet.prefixlen == 24


def test_hypervisor_side_names_fit_linux_and_differ_between_labs():
    one = parse_lab("name: one\nnodes: {r1: {interfaces: {eth1: {}}}}\n")
    two = parse_lab("name: two\nnodes: {r1: {interfaces: {eth1: {}}}}\n")
    names_one = [
        one.bridge,
        one.mgmt_port,
        one.nodes[0].mgmt_host_name,
        one.nodes[0].interfaces[0].host_name,
    ]
    names_two = [
        two.bridge,
        two.mgmt_port,
        two.nodes[0].mgmt_host_name,
        two.nodes[0].interfaces[0].host_name,
    ]
    assert all(len(name) <= 15 for name in names_one + names_two)
    assert not set(names_one) & set(names_two)
    assert one.container_name("r1") != two.container_name("r1")


def test_extension_keys_hold_yaml_anchors_and_are_ignored():
    lab = parse_lab("name: t\nx-files: &f {/etc/motd: hi}\nnodes: {a: {files: *f}}\n")
    assert lab.node("a").files == (("/etc/motd", "hi"),)


def test_yaml_merge_keys_extend_anchors():
    lab = parse_lab(
        "name: t\nx-base: &base {groups: [routers], resources: {cpus: 1}}\n"
        "nodes:\n  a:\n    <<: *base\n    groups: [core]\n"
    )
    assert lab.node("a").groups == ("core",)
    assert lab.node("a").cpus == 1.0


def test_default_management_subnet_has_room_for_the_most_nodes_a_lab_may_have():
    nodes = ", ".join(f"n{i}: {{}}" for i in range(250))
    assert len(parse_lab(f"name: t\nnodes: {{{nodes}}}\n").nodes) == 250
    with pytest.raises(TopologyError, match="the lab has 251 nodes: a lab has at most 250"):
        parse_lab(f"name: t\nnodes: {{{nodes}, n250: {{}}}}\n")


def test_a_lab_parsed_without_allocation_has_its_preferred_tag_and_subnet():
    lab = parse_lab("name: ospf-triangle\nnodes: {a: {}}\n")
    assert lab.allocation == model.preferred_allocation("ospf-triangle")
    assert lab.bridge == f"ltb-{model.lab_tag('ospf-triangle')}"


def test_every_hypervisor_side_name_follows_the_allocated_tag():
    lab = parse_lab("name: t\nnodes: {a: {interfaces: {eth1: {}}}}\n")
    moved = lab.with_allocation(model.Allocation("0a0b0c", IPv4Network("10.1.2.0/24")))
    a = moved.node("a")
    assert (moved.bridge, moved.mgmt_port) == ("ltb-0a0b0c", "ltm-0a0b0c")
    assert a.mgmt_host_name == model.mgmt_host_interface_name("0a0b0c", "a")
    assert a.interface("eth1").host_name == model.host_interface_name("0a0b0c", "a", "eth1")
    assert a.mgmt_ipv4 == IPv4Interface("10.1.2.2/24")
    assert moved.with_allocation(lab.allocation) == lab
