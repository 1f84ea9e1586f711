"""Spreading a lab over hypervisors (store.capacity.spread, pure logic): a lab that fits one
hypervisor goes there whole; one that fits none alone is spread with every node placed and
no hypervisor over its room at any moment, linked nodes together where they fit; pinned
nodes stay where they are pinned; draining hypervisors take no node; a lab that does not fit
even spread is refused with the reason. Bookings of a spread lab hold each hypervisor only
with their own part."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import yaml

from ltb.topology import parse_lab
from store.capacity import (
    CPU_SLACK,
    Booking,
    Capacity,
    Needs,
    NoRoom,
    free_at,
    node_needs,
    parts_of,
    spread,
)
from store.labs import placed_topology

GIB = 1024**3
T0 = datetime(2030, 5, 6, 10, tzinfo=UTC)
THREE = {
    "hv1": Capacity(2.0, 4 * GIB),
    "hv2": Capacity(2.0, 4 * GIB),
    "hv3": Capacity(2.0, 4 * GIB),
}


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def nodes(*cpus: float, memory_gib: float = 1) -> dict[str, Needs]:
    return {f"n{i}": Needs(c, int(memory_gib * GIB), 1) for i, c in enumerate(cpus, 1)}


def chain(names) -> list[list[str]]:
    return [[a, b] for a, b in pairwise(names)]


def booking(what, start_h, end_h, cpus, hypervisor, memory_gib=1):
    end = at(end_h) if end_h is not None else None
    return Booking(what, None, at(start_h), end, Needs(cpus, memory_gib * GIB, 1), hypervisor)


def assert_never_over(hypervisors, held, lab_nodes, placed, start_h, end_h):
    """At every hour of the lab's time, no hypervisor holds more than its capacity."""
    for hour in range(start_h, end_h):
        free = free_at(hypervisors, held, at(hour))
        for node, where in placed.items():
            room = free[where]
            free[where] = Capacity(
                room.cpus - lab_nodes[node].cpus, room.memory_bytes - lab_nodes[node].memory_bytes
            )
        for where, room in free.items():
            assert room.cpus >= -CPU_SLACK and room.memory_bytes >= 0, (hour, where, room)


def test_a_lab_that_fits_one_hypervisor_goes_there_whole():
    lab = nodes(0.5, 0.5, 0.5)
    held = [booking("busy", 0, 4, 2, "hv1")]
    placed = spread(THREE, held, lab, chain(lab), at(0), at(4))
    assert placed == dict.fromkeys(lab, "hv2")


def test_a_lab_that_fits_no_hypervisor_alone_is_spread_within_every_hypervisors_room():
    lab = nodes(1, 1, 1, 1, 1)  # 5 CPUs, each hypervisor has 2
    held = [booking("later", 2, 4, 1, "hv3")]  # hv3 has 1 CPU from hour 2
    placed = spread(THREE, held, lab, chain(lab), at(0), at(4))
    assert isinstance(placed, dict) and set(placed) == set(lab)
    assert sorted(placed.values()) == ["hv1", "hv1", "hv2", "hv2", "hv3"]
    assert_never_over(THREE, held, lab, placed, 0, 4)


def test_linked_nodes_stay_together_where_a_hypervisor_has_room_for_them():
    # Two pairs of 1.5 CPUs each, linked within the pair: a pair fits no 2-CPU hypervisor,
    # but on 3-CPU ones each pair stays whole and no link crosses.
    hypervisors = {"hv1": Capacity(3.0, 8 * GIB), "hv2": Capacity(3.0, 8 * GIB)}
    lab = {
        "a1": Needs(1.5, GIB, 1),
        "b1": Needs(1.5, GIB, 1),
        "a2": Needs(1.5, GIB, 1),
        "b2": Needs(1.5, GIB, 1),
    }
    placed = spread(hypervisors, [], lab, [["a1", "a2"], ["b1", "b2"]], at(0), at(1))
    assert placed["a1"] == placed["a2"] and placed["b1"] == placed["b2"]
    assert placed["a1"] != placed["b1"]


def test_a_chain_split_over_two_hypervisors_crosses_one_link():
    hypervisors = {"hv1": Capacity(2.0, 8 * GIB), "hv2": Capacity(2.0, 8 * GIB)}
    lab = nodes(1, 1, 1, 1)
    links = chain(lab)
    placed = spread(hypervisors, [], lab, links, at(0), at(1))
    crossing = [link for link in links if placed[link[0]] != placed[link[1]]]
    assert len(crossing) == 1


def test_a_split_node_goes_where_its_linked_nodes_are_rather_than_first_fit():
    # a fits only hv2; b, linked to a, could go first-fit to hv1 but joins a on hv2.
    hypervisors = {"hv1": Capacity(1.0, 8 * GIB), "hv2": Capacity(2.5, 8 * GIB)}
    lab = {"a": Needs(2, GIB, 1), "b": Needs(0.5, GIB, 1), "c": Needs(0.5, GIB, 1)}
    placed = spread(hypervisors, [], lab, [["a", "b"], ["a", "c"]], at(0), at(1))
    assert placed == {"a": "hv2", "b": "hv2", "c": "hv1"}


def test_pinned_nodes_stay_where_they_are_pinned_and_hold_that_room_first():
    lab = nodes(1, 1, 1, 1, 1)
    placed = spread(THREE, [], lab, chain(lab), at(0), at(1), pinned={"n1": "hv3", "n2": "hv3"})
    assert isinstance(placed, dict)
    assert (placed["n1"], placed["n2"]) == ("hv3", "hv3")
    assert "hv3" not in [placed[n] for n in ("n3", "n4", "n5")]  # hv3 is full
    assert_never_over(THREE, [], lab, placed, 0, 1)


def test_draining_hypervisors_take_no_node_and_are_named_when_they_are_why():
    lab = nodes(1, 1, 1)
    placed = spread(THREE, [], lab, chain(lab), at(0), at(1), draining={"hv1"})
    assert isinstance(placed, dict) and "hv1" not in placed.values()
    refused = spread(THREE, [], nodes(1, 1, 1, 1, 1), [], at(0), at(1), draining={"hv1"})
    assert isinstance(refused, NoRoom) and refused.draining == ("hv1",)


def test_a_lab_that_does_not_fit_even_spread_is_refused_with_the_moment_and_resource():
    held = [booking("later", 1, 3, 2, "hv2")]  # hv2 full from hour 1
    refused = spread(THREE, held, nodes(1, 1, 1, 1, 1), [], at(0), at(3))
    assert isinstance(refused, NoRoom)
    assert (refused.at, refused.resource, refused.draining) == (at(1), "CPU", ())
    assert [b.what for b in refused.holders] == ["later"]
    memory = spread(THREE, [], nodes(0.1, 0.1, 0.1, memory_gib=5), [], at(0), at(1))
    assert isinstance(memory, NoRoom) and memory.resource == "memory"


def test_pinned_nodes_that_overfill_their_hypervisor_are_refused():
    refused = spread(
        THREE, [], nodes(1, 1, 1), [], at(0), at(1), pinned=dict.fromkeys(("n1", "n2", "n3"), "hv1")
    )
    assert isinstance(refused, NoRoom) and refused.resource == "CPU"


def test_a_spread_booking_holds_each_hypervisor_only_with_its_part():
    parts = (("hv1", Needs(1.5, GIB, 2)), ("hv2", Needs(0.5, GIB, 1)))
    held = [Booking("lab s", None, at(0), None, Needs(2.0, 2 * GIB, 3), "hv1", parts)]
    free = free_at(THREE, held, at(1))
    assert free == {
        "hv1": Capacity(0.5, 3 * GIB),
        "hv2": Capacity(1.5, 3 * GIB),
        "hv3": Capacity(2.0, 4 * GIB),
    }


TRIO = """\
name: sp-unit
nodes:
  a: {resources: {cpus: 1}}
  b: {resources: {cpus: 0.5}, hypervisor: hv2}
  c:
links:
  - endpoints: [a:eth1, b:eth1]
"""


def test_a_labs_parts_follow_its_placement_then_its_pins_then_its_hypervisor():
    lab = parse_lab(TRIO, "lab")
    by_pin = dict(parts_of(lab, "hv1"))
    assert {h: n.nodes for h, n in by_pin.items()} == {"hv1": 2, "hv2": 1}
    by_placement = dict(parts_of(lab, "hv1", {"a": "hv3", "c": "hv3"}))
    assert {h: n.nodes for h, n in by_placement.items()} == {"hv3": 2, "hv2": 1}
    assert by_placement["hv3"].cpus == round(1.0 + node_needs(lab)["c"].cpus, 3)


def test_the_deployed_topology_pins_each_node_where_its_placement_put_it():
    assert placed_topology(TRIO, None) == TRIO
    placed = yaml.safe_load(placed_topology(TRIO, {"a": "hv3", "b": "hv2", "c": "hv1"}))
    assert {n: spec["hypervisor"] for n, spec in placed["nodes"].items()} == {
        "a": "hv3",
        "b": "hv2",
        "c": "hv1",
    }
    assert placed["links"] == yaml.safe_load(TRIO)["links"]
    assert {n.name: n.hypervisor for n in parse_lab(yaml.safe_dump(placed), "lab").nodes} == {
        "a": "hv3",
        "b": "hv2",
        "c": "hv1",
    }
