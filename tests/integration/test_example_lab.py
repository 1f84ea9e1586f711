"""The shipped OSPF example, deployed for real: links, routing, management and removal.

Tests run in file order against one deployment; the last ones remove the lab.
"""

from __future__ import annotations

import itertools
import json
import subprocess

import pytest

from ltb.ssh import ssh_argv
from tests.integration.conftest import (
    ROOT,
    RunningLab,
    assert_no_leftovers,
    deploy,
    remove,
    remove_if_left,
    run_playbook,
    wait_until,
)

pytestmark = pytest.mark.integration
EXAMPLE = ROOT / "examples" / "ospf-triangle.lab.yml"
SSH_KEY = "/var/lib/ltb/ssh/id_ed25519"


@pytest.fixture(scope="module")
def lab(docker_client):
    remove_if_left(EXAMPLE)  # a lab left by an interrupted run must not decide the outcome
    deploy(EXAMPLE)
    yield RunningLab(EXAMPLE, docker_client)
    remove_if_left(EXAMPLE)  # the last tests remove it; only a failed run leaves it


def test_every_link_pings_end_to_end(lab):
    model = lab.model
    for link in model.links:
        for one, other in itertools.permutations(link.endpoints, 2):
            target = model.node(other.node).interface(other.interface).ipv4
            assert lab.ping(one.node, str(target.ip)), f"{one} cannot ping {other} ({target})"


def test_shared_segment_of_three_nodes_pings_all_ways(lab):
    addresses = {"h1": "10.0.100.11", "h2": "10.0.100.12", "r3": "10.0.100.3"}
    for source, target in itertools.permutations(addresses, 2):
        assert lab.ping(source, addresses[target]), f"{source} cannot ping {target}"


def test_ospf_routes_converge_and_carry_traffic_across_the_lab(lab):
    wanted = {"10.255.0.2/32", "10.255.0.3/32", "10.0.23.0/24", "10.0.100.0/24"}

    def ospf_routes():
        _, output = lab.exec("r1", "vtysh", "-c", "show ip route ospf json")
        routes = json.loads(output or "{}")
        installed = {p for p, entries in routes.items() if any(e.get("installed") for e in entries)}
        return wanted <= installed

    assert wait_until(ospf_routes, timeout=90), "r1 did not learn the lab's routes over OSPF"
    # h1 sits behind r3: reaching r1's loopback crosses a routed hop.
    assert wait_until(lambda: lab.ping("h1", "10.255.0.1"), timeout=20)


def test_management_addresses_answer_from_the_hypervisor(lab):
    for node in lab.model.nodes:
        result = subprocess.run(
            ["ping", "-c", "1", "-W", "2", str(node.mgmt_ipv4.ip)], capture_output=True, check=False
        )
        assert result.returncode == 0, f"{node.name} does not answer at {node.mgmt_ipv4.ip}"


def test_ssh_with_the_platform_key_reaches_a_node(lab):
    r2 = lab.model.node("r2")
    result = subprocess.run(
        ssh_argv(str(r2.mgmt_ipv4.ip), "hostname", key=SSH_KEY, connect_timeout=5),
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "r2"


def test_nodes_are_ansible_hosts(lab):
    result = subprocess.run(
        [
            ROOT / ".venv" / "bin" / "ansible",
            "-i",
            "inventory/",
            "-i",
            str(EXAMPLE),
            "r1",
            "-m",
            "ansible.builtin.command",
            "-a",
            "ip -br addr",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "10.0.12.1/24" in result.stdout


def test_second_deploy_of_an_unchanged_lab_changes_nothing(lab):
    result = deploy(EXAMPLE)
    assert result.changed() == {}


def test_remove_leaves_no_container_bridge_port_or_interface(lab):
    remove(EXAMPLE)
    assert_no_leftovers("ospf-triangle")


def test_remove_of_a_lab_that_is_not_there_changes_nothing(lab):
    result = run_playbook("remove.yml", EXAMPLE)
    assert result.returncode == 0
    assert result.changed() == {}
