"""The kind registry decides which nodes deploy.yml reaches in per-node plays: the inventory's
group ltb_node_plays holds the nodes whose kind says so (NodeKind.per_node_plays)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ltb import kinds
from ltb.inventory import PER_NODE_GROUP, render_inventory
from ltb.topology import RESERVED_GROUPS, TopologyError, parse_lab

MIB = 1024 * 1024


@pytest.fixture
def per_lab_kind() -> Iterator[str]:
    """A kind of the test's own whose role deploys a whole lab at once, as container_node does."""
    kind = kinds.NodeKind(
        name="dp-box",
        group="dp_boxes",
        role="dp_box_node",
        runtime=kinds.DOCKER,
        connection_vars=lambda lab, node: {},
        default_cpus=0.1,
        default_memory_bytes=64 * MIB,
        per_node_plays=False,
    )
    kinds.register(kind)
    yield kind.name
    del kinds.KINDS[kind.name]


def test_vm_nodes_and_nodes_of_kinds_with_per_node_plays_are_in_the_group_containers_are_not(
    per_lab_kind,
):
    lab = parse_lab("name: dp-kinds\nnodes:\n  c1: {}\n  v1: {kind: vm}\n  b1: {kind: dp-box}\n")
    assert render_inventory(lab).groups[PER_NODE_GROUP] == ["v1"]


def test_the_group_exists_empty_when_no_node_needs_per_node_plays():
    lab = parse_lab("name: dp-kinds\nnodes:\n  c1: {}\n  c2: {}\n")
    assert render_inventory(lab).groups[PER_NODE_GROUP] == []


def test_a_kind_registered_without_saying_gets_per_node_plays():
    kind = kinds.NodeKind("dp-any", "dp_any", "dp_any_node", kinds.DOCKER, dict, 0.1, MIB)
    assert kind.per_node_plays


def test_a_topology_group_may_not_take_the_groups_name():
    assert PER_NODE_GROUP in RESERVED_GROUPS
    with pytest.raises(TopologyError, match="reserved"):
        parse_lab(f"name: dp-kinds\nnodes:\n  c1: {{groups: [{PER_NODE_GROUP}]}}\n")
