"""Node kinds carry their behaviour (ltb.kinds): a kind registered in one place is deployed by
its role, counted with its own defaults, offered its runtime's shell and read where its runtime
runs, with no change anywhere else. Two kinds of a test's own (one per runtime) prove it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ltb import kinds, node_state
from ltb.cli import main
from ltb.inventory import render_inventory
from ltb.node_state import Cached, node_states
from ltb.topology import TopologyError, parse_lab
from portal.terminal import Target, TerminalRefused, check_container_running
from store.capacity import Needs, lab_needs

MIB = 1024 * 1024
TOPOLOGY = """\
name: kinds
nodes:
  f1: {kind: frr-box}
  f2: {kind: frr-box, resources: {cpus: 0.3}}
  w1: {kind: winbox}
  w2: {kind: winbox, resources: {cpus: 1.2, memory: 1GiB}}
"""


@pytest.fixture
def third_kinds() -> Iterator[None]:
    """Two kinds besides container and vm: a Docker one and a libvirt one, each with defaults
    unlike those of the shipped kinds."""
    added = [
        kinds.NodeKind(
            name="frr-box",
            group="frr_boxes",
            role="frr_box_node",
            runtime=kinds.DOCKER,
            connection_vars=lambda lab, node: {"ansible_connection": "frr-box"},
            default_cpus=0.1,
            default_memory_bytes=64 * MIB,
        ),
        kinds.NodeKind(
            name="winbox",
            group="winboxes",
            role="winbox_node",
            runtime=kinds.LIBVIRT,
            connection_vars=lambda lab, node: {"ansible_connection": "winbox"},
            default_cpus=2.0,
            default_memory_bytes=2048 * MIB,
            whole_cpus=True,
        ),
    ]
    for kind in added:
        kinds.register(kind)
    yield
    for kind in added:
        del kinds.KINDS[kind.name]


def test_a_registered_kind_is_a_valid_topology_kind_and_an_unregistered_one_is_not(third_kinds):
    assert [node.kind for node in parse_lab(TOPOLOGY).nodes] == ["frr-box"] * 2 + ["winbox"] * 2
    del kinds.KINDS["winbox"]
    try:
        with pytest.raises(TopologyError, match="unknown node kind 'winbox'"):
            parse_lab(TOPOLOGY)
    finally:
        kinds.register(kinds.NodeKind("winbox", "w", "w", kinds.LIBVIRT, dict, 1.0, MIB))


def test_the_inventory_gives_each_node_its_kinds_role_group_and_connection(third_kinds):
    inventory = render_inventory(parse_lab(TOPOLOGY))
    f1, w1 = inventory.hosts["f1"], inventory.hosts["w1"]
    assert (f1["ltb_node"]["role"], w1["ltb_node"]["role"]) == ("frr_box_node", "winbox_node")
    assert (f1["ansible_connection"], w1["ansible_connection"]) == ("frr-box", "winbox")
    assert inventory.groups["frr_boxes"] == ["f1", "f2"]
    assert inventory.groups["winboxes"] == ["w1", "w2"]


def test_capacity_counts_each_kinds_defaults_and_whole_cpus_where_the_kind_says(third_kinds):
    # f1 0.1 (default) + f2 0.3 + w1 2 (default) + w2 1.2 counted whole as 2.
    assert lab_needs(parse_lab(TOPOLOGY)) == Needs(
        cpus=4.4, memory_bytes=(64 + 64 + 2048 + 1024) * MIB, nodes=4
    )


def test_reach_offers_docker_exec_for_a_docker_kind_only(third_kinds, tmp_path, capsys):
    path = tmp_path / "kinds.lab.yml"
    path.write_text(TOPOLOGY)
    assert main(["reach", str(path), "--state-dir", str(tmp_path)]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:5]}
    assert "docker exec -it ltb-kinds.f1 bash" in lines["f1"]
    assert "ssh -i" in lines["w1"] and "docker exec" not in lines["w1"]


def test_node_states_are_read_where_each_kinds_runtime_runs(third_kinds, monkeypatch):
    containers = {"ltb-kinds.f1": "running", "ltb-kinds.w1": "running"}
    domains = {"ltb-kinds.w1": "paused", "ltb-kinds.f1": "paused"}
    monkeypatch.setattr(node_state, "CONTAINERS", Cached(lambda: containers, 60))
    monkeypatch.setattr(node_state, "DOMAINS", Cached(lambda: domains, 60))
    states = node_states("kinds", {"f1": "frr-box", "w1": "winbox", "w2": "winbox"})
    assert states == {"f1": "running", "w1": "paused", "w2": "missing"}


def test_a_kind_of_an_unknown_runtime_is_refused_when_registered():
    with pytest.raises(ValueError, match="runtime 'podman' is not one of"):
        kinds.NodeKind("p", "ps", "p_node", "podman", dict, 1.0, MIB)


def test_a_kind_registered_twice_is_refused():
    with pytest.raises(ValueError, match="'container' is registered twice"):
        kinds.register(kinds.get("container"))


def test_a_terminal_checks_the_container_of_a_docker_kind_only(third_kinds):
    # Docker is asked for a container that is not there: a docker kind's node is refused as
    # down, a libvirt kind's is left to SSH (no container to ask about).
    target = dict(lab="kinds", address="192.0.2.1", container="ltb-kinds.none-such")
    with pytest.raises(TerminalRefused, match="its container is gone"):
        check_container_running(Target(node="f1", kind="frr-box", **target))
    check_container_running(Target(node="w1", kind="winbox", **target))
