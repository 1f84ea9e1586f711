"""How large a new lab still fits, as the calendar says it (store.placement.room_for_new_labs,
pure logic): on one hypervisor, and spread over the hypervisors that take new labs, as
placement sees room (free throughout the step; a draining one's room counts for neither)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from store.capacity import Booking, Capacity, Needs, spread
from store.placement import room_for_new_labs

GIB = 1024**3
T0 = datetime(2031, 3, 3, 9, tzinfo=UTC)
END = T0 + timedelta(hours=1)
TWO = {"hv1": Capacity(4.0, 8 * GIB), "hv2": Capacity(4.0, 8 * GIB)}


def test_one_hypervisor_s_room_and_the_sum_a_spread_lab_may_take():
    held = [Booking("lab x", None, T0, None, Needs(3, GIB, 1), "hv1")]
    one, together = room_for_new_labs(TWO, held, T0, END)
    assert one == Capacity(4.0, 8 * GIB)
    assert together == Capacity(5.0, 15 * GIB)
    # What the sum says fits is what placement does: 5 one-CPU nodes go, spread.
    nodes = {f"n{i}": Needs(1, GIB, 1) for i in range(5)}
    placed = spread(TWO, held, nodes, [], T0, END)
    assert isinstance(placed, dict) and sorted(set(placed.values())) == ["hv1", "hv2"]
    assert not isinstance(spread(TWO, held, {**nodes, "n5": Needs(1, GIB, 1)}, [], T0, END), dict)


def test_a_draining_hypervisor_counts_for_neither_and_an_over_committed_one_for_nothing():
    held = [Booking("lab y", None, T0, None, Needs(6, GIB, 1), "hv1")]  # over-committed
    one, together = room_for_new_labs(TWO, held, T0, END)
    assert (one, together) == (Capacity(4.0, 8 * GIB), Capacity(4.0, 15 * GIB))
    one, together = room_for_new_labs(TWO, held, T0, END, frozenset({"hv2"}))
    assert (one, together) == (Capacity(0.0, 7 * GIB), Capacity(0.0, 7 * GIB))
    nothing = room_for_new_labs(TWO, [], T0, END, frozenset(TWO))
    assert nothing == (Capacity(0.0, 0), Capacity(0.0, 0))
