"""Node states (ltb.node_state): Docker's and libvirt's words mapped to a node's state, read once
for all labs and kept a few seconds; the topology picture shows them in words and colour."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from ltb import node_state
from ltb.node_state import Cached, container_state, node_states, parse_virsh_list
from ltb.picture import STATE_FILLS, topology_svg
from ltb.topology import parse_lab

SVG = "{http://www.w3.org/2000/svg}"

VIRSH_LIST = """\
 Id   Name                 State
-------------------------------------
 1    ltb-ue-lab.vm1       running
 3    ltb-ue-lab.vm4       paused
 -    ltb-ue-lab.vm2       shut off
 -    ltb-ue-lab.vm3       crashed
 -    other                in shutdown

"""


def test_virsh_list_gives_each_domain_its_state_in_node_words():
    assert parse_virsh_list(VIRSH_LIST) == {
        "ltb-ue-lab.vm1": "running",
        "ltb-ue-lab.vm4": "paused",
        "ltb-ue-lab.vm2": "stopped",
        "ltb-ue-lab.vm3": "stopped",
        "other": "stopping",
    }


def test_an_empty_or_unexpected_virsh_answer_gives_no_domain_or_unknown():
    assert parse_virsh_list(" Id   Name   State\n--------------------\n\n") == {}
    assert parse_virsh_list(" 7    ltb-x.vm   frobnicated\n") == {"ltb-x.vm": "unknown"}


def test_docker_states_and_health_become_node_states():
    assert container_state("running", "Up 5 minutes") == "running"
    assert container_state("running", "Up 5 minutes (healthy)") == "running"
    assert container_state("running", "Up 2 seconds (health: starting)") == "starting"
    assert container_state("running", "Up 9 minutes (unhealthy)") == "unhealthy"
    assert container_state("exited", "Exited (137) 3 seconds ago") == "stopped"
    assert container_state("created", "Created") == "stopped"
    assert container_state("paused", "Up 1 minute (Paused)") == "paused"
    assert container_state("restarting", "Restarting (1) 2 seconds ago") == "restarting"
    assert container_state("something new", "") == "unknown"


def test_nodes_are_missing_without_their_container_or_domain_and_unknown_when_unasked(
    monkeypatch,
):
    monkeypatch.setattr(node_state, "CONTAINERS", Cached(lambda: {"ltb-l.a": "running"}, 60))
    monkeypatch.setattr(node_state, "DOMAINS", Cached(lambda: None, 60))
    kinds = {"a": "container", "b": "container", "v": "vm"}
    assert node_states("l", kinds) == {"a": "running", "b": "missing", "v": "unknown"}


def test_a_reading_is_kept_for_its_seconds_then_read_again():
    reads = []

    def read():
        reads.append(1)
        return {"n": str(len(reads))}

    cached = Cached(read, 60)
    assert cached.get() == cached.get() == {"n": "1"}
    cached.forget()
    assert cached.get() == {"n": "2"} and len(reads) == 2
    assert Cached(read, 0).get() == {"n": "3"}


def test_libvirt_is_not_asked_for_a_lab_of_containers(monkeypatch):
    def fail():
        raise AssertionError("virsh was run for containers only")

    monkeypatch.setattr(node_state, "CONTAINERS", Cached(lambda: {}, 60))
    monkeypatch.setattr(node_state, "DOMAINS", Cached(fail, 60))
    assert node_states("l", {"a": "container"}) == {"a": "missing"}


TOPOLOGY = """\
name: states
nodes:
  r1:
    interfaces:
      eth1: {ipv4: 10.0.12.1/24}
  r2:
    interfaces:
      eth1: {ipv4: 10.0.12.2/24}
links:
  - endpoints: [r1:eth1, r2:eth1]
"""


def node_shapes(svg: str) -> dict[str, tuple[list[str], str | None]]:
    """Graphviz node title -> (its texts, its shape's fill)."""
    root = ET.fromstring(svg)  # noqa: S314 - our own Graphviz's output, parsed to check it
    found = {}
    for group in root.iter(f"{SVG}g"):
        if group.get("class") != "node":
            continue
        title = group.find(f"{SVG}title").text
        texts = [t.text for t in group.iter(f"{SVG}text")]
        fills = [p.get("fill") for p in group.iter(f"{SVG}path") if p.get("fill") != "none"]
        found[title] = (texts, fills[0] if fills else None)
    return found


def test_the_picture_says_each_nodes_state_in_words_and_fills_it_with_its_colour():
    lab = parse_lab(TOPOLOGY)
    shapes = node_shapes(topology_svg(lab, states={"r1": "running", "r2": "stopped"}))
    assert shapes["n0"] == (["r1", "container", "state: running"], STATE_FILLS["running"])
    assert shapes["n1"] == (["r2", "container", "state: stopped"], STATE_FILLS["stopped"])
    assert STATE_FILLS["running"] != STATE_FILLS["stopped"]
    plain = node_shapes(topology_svg(lab))
    assert plain["n0"] == (["r1", "container"], None)
