"""A lab spread over hypervisors, as the inventory renders it: where each node runs, what each
hypervisor wires, and the tunnel each needs (ltb.inventory.tunnel_vars)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ltb.inventory import TUNNEL_MTU, render_inventory
from ltb.topology import TopologyError, parse_lab

SPREAD = """
name: spread
nodes:
  a: {interfaces: {eth1: {ipv4: 10.0.1.1/24}}}
  b: {hypervisor: hv2, interfaces: {eth1: {ipv4: 10.0.1.2/24}, eth2: {ipv4: 10.0.2.2/24}}}
  c: {hypervisor: hv2, interfaces: {eth1: {ipv4: 10.0.2.3/24}}}
  d: {interfaces: {eth1: {ipv4: 10.0.3.4/24}}}
  e: {interfaces: {eth1: {ipv4: 10.0.3.5/24}}}
links:
  - endpoints: [a:eth1, b:eth1]
  - endpoints: [b:eth2, c:eth1]
  - endpoints: [d:eth1, e:eth1]
"""
ROOT = Path(__file__).parents[2]
BIN = Path(sys.executable).parent
ADDRESSES = {"hv1": "198.18.0.1", "hv2": "198.18.0.2"}


def test_a_node_runs_on_the_hypervisor_it_names_and_the_others_on_the_labs():
    hosts = render_inventory(parse_lab(SPREAD), "hv1", tunnel_addresses=ADDRESSES).hosts
    assert {name: host["ltb_hypervisor"] for name, host in hosts.items()} == {
        "a": "hv1",
        "b": "hv2",
        "c": "hv2",
        "d": "hv1",
        "e": "hv1",
    }


def test_each_hypervisor_wires_only_the_ports_of_its_own_nodes():
    hosts = render_inventory(parse_lab(SPREAD), "hv1", tunnel_addresses=ADDRESSES).hosts
    here, there = hosts["a"]["ltb_lab_network"], hosts["b"]["ltb_lab_network"]
    assert {p["node"] for p in here["ports"]} == {"a", "d", "e"}
    assert {p["node"] for p in there["ports"]} == {"b", "c"}
    assert here["hypervisor"] == "hv1" and there["hypervisor"] == "hv2"


def test_the_tunnel_carries_only_the_links_that_cross_hypervisors_never_management():
    lab = parse_lab(SPREAD)
    hosts = render_inventory(lab, "hv1", tunnel_addresses=ADDRESSES).hosts
    here, there = hosts["a"]["ltb_lab_network"]["tunnel"], hosts["c"]["ltb_lab_network"]["tunnel"]
    crossing = lab.links[0].vlan  # a-b; b-c and d-e stay on one hypervisor
    assert here == {
        "device": f"ltt-{lab.tag}",
        "vni": int(lab.tag, 16),
        "port": 4789,
        "mtu": TUNNEL_MTU,
        "local": "198.18.0.1",
        "remotes": ["198.18.0.2"],
        "vlans": [crossing],
    }
    assert there["local"] == "198.18.0.2" and there["remotes"] == ["198.18.0.1"]
    assert there["vlans"] == [crossing] and len(here["device"]) <= 15


def test_a_lab_on_one_hypervisor_has_no_tunnel_and_needs_no_addresses():
    lab = parse_lab(SPREAD.replace("hypervisor: hv2, ", ""))
    for host in render_inventory(lab, "hv1").hosts.values():
        assert "tunnel" not in host["ltb_lab_network"]


def test_a_spread_lab_without_a_hypervisors_tunnel_address_names_it():
    with pytest.raises(ValueError, match="hv2 has no tunnel address"):
        render_inventory(parse_lab(SPREAD), "hv1", tunnel_addresses={"hv1": "198.18.0.1"})


def test_a_hypervisor_name_of_the_wrong_shape_is_an_error_at_its_place():
    with pytest.raises(TopologyError) as error:
        parse_lab(SPREAD.replace("hypervisor: hv2", "hypervisor: 'hv 2; rm'", 1))
    assert "nodes.b.hypervisor" in str(error.value)
    assert "hypervisor name" in str(error.value)


def test_the_inventory_refuses_a_node_on_an_unknown_hypervisor_and_allocates_nothing(tmp_path):
    """The plugin's check, before the lab takes a tag and subnet from the registry."""
    topology = tmp_path / "mt-unknown.lab.yml"
    topology.write_text(SPREAD.replace("name: spread", "name: mt-unknown"))
    state = tmp_path / "state"
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "LTB_STATE_DIR": str(state)}
    shown = subprocess.run(
        [BIN / "ansible-inventory", "-i", "inventory/", "-i", topology, "--list"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert shown.returncode != 0
    message = " ".join(shown.stderr.split())
    assert "node 'b': hypervisor 'hv2' is not in group hypervisors (known: localhost)" in message
    assert (
        not (state / "allocations.json").exists()
        or "mt-unknown" not in (state / "allocations.json").read_text()
    )
