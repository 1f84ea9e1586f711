"""Placement of labs on hypervisors (store.capacity, pure logic): a lab needs room on ONE
hypervisor at every moment of its time, beside the bookings placed first-fit at each moment;
the refusal names the moment and what does not fit; the largest lab that still fits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from store.capacity import Booking, Capacity, Needs, NoRoom, free_at, largest_free, placement

GIB = 1024**3
T0 = datetime(2030, 5, 6, 10, tzinfo=UTC)
TWO = {"hv1": Capacity(4.0, 8 * GIB), "hv2": Capacity(4.0, 8 * GIB)}


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def booking(what, start_h, end_h, cpus, memory_gib=1, hypervisor=None):
    end = at(end_h) if end_h is not None else None
    return Booking(what, None, at(start_h), end, Needs(cpus, memory_gib * GIB, 1), hypervisor)


def test_a_lab_that_fits_only_in_the_sum_of_two_hypervisors_is_refused():
    held = [booking("a", 0, 2, 3), booking("b", 0, 2, 3)]  # 1 CPU left on each
    refused = placement(TWO, held, Needs(2, GIB, 2), at(0), at(2))
    assert isinstance(refused, NoRoom)
    assert (refused.at, refused.resource) == (at(0), "CPU")
    assert {h: room.cpus for h, room in refused.free.items()} == {"hv1": 1.0, "hv2": 1.0}
    assert [b.what for b in refused.holders] == ["a", "b"]


def test_bookings_go_first_fit_and_a_lab_takes_the_first_hypervisor_with_room():
    held = [booking("a", 0, 2, 3)]
    assert free_at(TWO, held, at(1))["hv1"] == Capacity(1.0, 7 * GIB)
    assert placement(TWO, held, Needs(1, GIB, 1), at(0), at(2)) == "hv1"
    assert placement(TWO, held, Needs(2, GIB, 1), at(0), at(2)) == "hv2"


def test_a_lab_recorded_on_a_hypervisor_stays_there():
    held = [booking("lab x", 0, None, 3, hypervisor="hv2")]
    assert placement(TWO, held, Needs(2, GIB, 1), at(0), at(2)) == "hv1"
    assert free_at(TWO, held, at(5))["hv2"] == Capacity(1.0, 7 * GIB)


def test_the_lab_must_stay_on_one_hypervisor_for_its_whole_time():
    # hv1 is full later, hv2 is full earlier: each moment has room somewhere, no one
    # hypervisor has it throughout.
    held = [
        booking("early", 0, 1, 4, hypervisor="hv2"),
        booking("late", 1, 2, 4, hypervisor="hv1"),
    ]
    refused = placement(TWO, held, Needs(1, GIB, 1), at(0), at(2))
    assert isinstance(refused, NoRoom) and refused.at == at(1)
    assert [b.what for b in refused.holders] == ["late"]
    assert placement(TWO, held, Needs(1, GIB, 1), at(1), at(2)) == "hv2"


def test_memory_and_cpu_free_on_different_hypervisors_do_not_make_room():
    held = [booking("cpu-heavy", 0, 2, 4, memory_gib=1), booking("mem-heavy", 0, 2, 1, 8)]
    refused = placement(TWO, held, Needs(2, 4 * GIB, 1), at(0), at(2))
    assert isinstance(refused, NoRoom) and refused.resource == "CPU and memory"


def test_a_booking_ending_before_the_lab_starts_takes_no_room():
    held = [booking("before", 0, 1, 4), booking("before2", 0, 1, 4)]
    assert placement(TWO, held, Needs(4, GIB, 1), at(1), at(3)) == "hv1"


def test_the_largest_lab_that_still_fits_is_one_hypervisors_free_room():
    held = [booking("a", 0, 2, 3), booking("b", 1, 2, 2)]
    host, room = largest_free(TWO, held, at(0), at(2))
    assert (host, room) == ("hv2", Capacity(2.0, 7 * GIB))
    assert largest_free(TWO, [], at(0), at(1)) == ("hv1", Capacity(4.0, 8 * GIB))
