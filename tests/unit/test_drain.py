"""Draining hypervisors (store.capacity, pure logic): a hypervisor with `ltb_drain: true`
takes no new placement, what is already placed there keeps holding it, and a refusal names
the drain only when a draining hypervisor would have had room."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import yaml

from store.capacity import (
    Booking,
    Capacity,
    Needs,
    NoRoom,
    draining_hypervisors,
    free_at,
    largest_free,
    placement,
)

GIB = 1024**3
T0 = datetime(2031, 3, 3, 9, tzinfo=UTC)
TWO = {"hv1": Capacity(4.0, 8 * GIB), "hv2": Capacity(4.0, 8 * GIB)}
END = T0 + timedelta(hours=2)


def test_placement_skips_a_draining_hypervisor_that_has_room():
    assert placement(TWO, [], Needs(1, GIB, 1), T0, END) == "hv1"
    assert placement(TWO, [], Needs(1, GIB, 1), T0, END, draining={"hv1"}) == "hv2"


def test_what_is_placed_on_a_draining_hypervisor_keeps_holding_it():
    held = [Booking("lab kept", None, T0, None, Needs(3, GIB, 1), "hv1")]
    assert free_at(TWO, held, T0)["hv1"] == Capacity(1.0, 7 * GIB)
    # hv2 is full: the 1 CPU left on draining hv1 is not offered.
    full = [*held, Booking("lab big", None, T0, None, Needs(4, GIB, 1), "hv2")]
    refused = placement(TWO, full, Needs(1, GIB, 1), T0, END, draining={"hv1"})
    assert isinstance(refused, NoRoom)
    assert refused.draining == ("hv1",)


def test_a_refusal_names_the_drain_only_when_a_draining_hypervisor_had_room():
    refused = placement(TWO, [], Needs(5, GIB, 1), T0, END, draining={"hv1"})
    assert isinstance(refused, NoRoom) and refused.draining == ()
    assert refused.resource == "CPU"
    every = placement(TWO, [], Needs(1, GIB, 1), T0, END, draining={"hv1", "hv2"})
    assert isinstance(every, NoRoom) and every.draining == ("hv1", "hv2")


def test_the_largest_free_lab_is_on_a_hypervisor_that_is_not_draining():
    small = {"hv1": Capacity(8.0, 8 * GIB), "hv2": Capacity(2.0, 8 * GIB)}
    assert largest_free(small, [], T0, END)[0] == "hv1"
    host, room = largest_free(small, [], T0, END, draining={"hv1"})
    assert (host, room.cpus) == ("hv2", 2.0)
    assert largest_free(small, [], T0, END, draining={"hv1", "hv2"}) == (None, Capacity(0.0, 0))


def test_ltb_drain_is_read_from_host_vars_over_group_vars(tmp_path):
    hosts = {
        "hypervisors": {
            "hosts": {
                "hv1": {"ltb_drain": True},
                "hv2": None,
                "hv3": {"ltb_drain": False},
            }
        }
    }
    (tmp_path / "hosts.yaml").write_text(yaml.safe_dump(hosts))
    assert draining_hypervisors(tmp_path) == {"hv1"}
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "hypervisors.yml").write_text("ltb_drain: true\n")
    assert draining_hypervisors(tmp_path) == {"hv1", "hv2"}


def test_an_ltb_drain_that_is_not_a_boolean_is_refused_naming_the_hypervisor(tmp_path):
    hosts = {"hypervisors": {"hosts": {"hv1": {"ltb_drain": "soon"}}}}
    (tmp_path / "hosts.yaml").write_text(yaml.safe_dump(hosts))
    with pytest.raises(ValueError, match=r"hypervisor hv1: ltb_drain must be true or false"):
        draining_hypervisors(tmp_path)
