"""Inventory rendering: hosts, groups and variables that the playbooks rely on."""

from pathlib import Path

from ltb.inventory import render_inventory, safe_group_name
from ltb.topology import load_lab, parse_lab

EXAMPLE = Path(__file__).parents[2] / "examples" / "ospf-triangle.lab.yml"


def test_one_host_per_node_in_lab_kind_and_topology_groups():
    data = render_inventory(load_lab(EXAMPLE), "hv1")
    assert list(data.hosts) == ["r1", "r2", "r3", "h1", "h2"]
    assert data.groups["ltb_nodes"] == ["r1", "r2", "r3", "h1", "h2"]
    assert data.groups["lab_ospf_triangle"] == ["r1", "r2", "r3", "h1", "h2"]
    assert data.groups["containers"] == ["r1", "r2", "r3", "h1", "h2"]
    assert data.groups["routers"] == ["r1", "r2", "r3"]
    assert data.groups["hosts"] == ["h1", "h2"]


def test_node_variables_carry_interfaces_management_first():
    lab = load_lab(EXAMPLE)
    r1 = render_inventory(lab, "hv1").hosts["r1"]
    assert r1["ltb_hypervisor"] == "hv1"
    assert r1["ltb_lab_network"]["bridge"] == lab.bridge
    interfaces = r1["ltb_node"]["interfaces"]
    assert [i["name"] for i in interfaces] == ["eth0", "eth1", "eth2"]
    assert interfaces[0]["mgmt"] and interfaces[0]["vlan"] == 1
    assert interfaces[1]["addresses"] == ["10.0.12.1/24"]
    assert r1["ltb_node"]["mgmt_ipv4"] == str(lab.node("r1").mgmt_ipv4.ip)


def test_containers_are_reached_through_the_docker_api_by_container_name():
    r1 = render_inventory(load_lab(EXAMPLE)).hosts["r1"]
    assert r1["ansible_connection"] == "community.docker.docker_api"
    assert r1["ansible_host"] == "ltb-ospf-triangle.r1"


def test_group_names_with_dashes_become_ansible_safe():
    lab = parse_lab("name: t\nnodes: {a: {groups: [core-routers]}}\n")
    assert render_inventory(lab).groups[safe_group_name("core-routers")] == ["a"]
    assert "core_routers" in render_inventory(lab).groups


def test_file_contents_pass_through_unchanged():
    lab = parse_lab("name: t\nnodes: {a: {files: {/etc/x: \"{{ lookup('pipe', 'id') }}\"}}}\n")
    files = render_inventory(lab).hosts["a"]["ltb_node"]["files"]
    assert files == [{"path": "/etc/x", "content": "{{ lookup('pipe', 'id') }}"}]


def test_lab_network_carries_the_allocated_tag_and_where_remove_releases_it():
    lab = load_lab(EXAMPLE)
    network = render_inventory(lab, "hv1", "/x.lab.yml", "/s/allocations.json").hosts["r1"]
    assert network["ltb_lab_network"]["tag"] == lab.tag
    assert network["ltb_lab_network"]["allocations"] == "/s/allocations.json"
    assert network["ltb_lab_network"]["mgmt_subnet"] == str(lab.mgmt_subnet)
