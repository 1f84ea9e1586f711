"""What a lab needs, what the hypervisors have, and the sweep that finds the highest load of
an interval (store.capacity); the calendar week of the reservation-hours quota."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import yaml

from ltb.topology import parse_lab
from portal.quotas import week_start
from store.capacity import Booking, Needs, hypervisor_capacity, lab_needs, machine_capacity, peak

MIB = 1024 * 1024
T0 = datetime(2030, 5, 6, 10, tzinfo=UTC)


def lab(nodes: str):
    return parse_lab(f"name: needs\nnodes:\n{nodes}")


def test_nodes_without_resources_take_their_kinds_default():
    needs = lab_needs(lab("  c1: {}\n  c2: {}\n  v1: {kind: vm}\n"))
    assert needs == Needs(cpus=1.5, memory_bytes=(128 + 128 + 256) * MIB, nodes=3)


def test_resources_of_the_topology_count_and_a_vms_fractional_cpus_count_whole():
    needs = lab_needs(
        lab(
            "  c1: {resources: {cpus: 0.5, memory: 1GiB}}\n"
            "  v1: {kind: vm, resources: {cpus: 1.5, memory: 512MiB}}\n"
        )
    )
    assert needs == Needs(cpus=2.5, memory_bytes=1536 * MIB, nodes=2)


def booking(what: str, start_h: float, end_h: float | None, cpus: float, memory: int = 0):
    end = T0 + timedelta(hours=end_h) if end_h is not None else None
    return Booking(what, None, T0 + timedelta(hours=start_h), end, Needs(cpus, memory, 1))


def test_peak_finds_the_highest_load_where_bookings_start_inside_the_interval():
    held = [
        booking("a", -1, 1, 1.0, 100),  # holds the interval's start
        booking("b", 2, 4, 2.0, 50),  # starts inside, after a ended
        booking("c", 3, 5, 1.0, 10),  # overlaps b from hour 3
        booking("d", 6, 7, 9.0, 999),  # after the interval
    ]
    top = peak(held, T0, T0 + timedelta(hours=6))
    assert (top.cpus, top.cpus_at) == (3.0, T0 + timedelta(hours=3))
    assert (top.memory_bytes, top.memory_at) == (100, T0)
    assert (top.labs, top.labs_at) == (2, T0 + timedelta(hours=3))


def test_a_booking_ending_as_another_starts_does_not_overlap_it():
    held = [booking("a", 0, 1, 2.0), booking("b", 1, 2, 2.0)]
    assert peak(held, T0, T0 + timedelta(hours=2)).cpus == 2.0


def test_a_lab_without_end_holds_every_later_moment():
    held = [booking("running", 0, None, 1.0), booking("r", 100, 101, 1.0)]
    assert peak(held, T0 + timedelta(hours=99), T0 + timedelta(hours=102)).cpus == 2.0


def write_inventory(directory, hosts: dict, group_vars: dict | None = None):
    (directory / "group_vars").mkdir()
    (directory / "hosts.yaml").write_text(yaml.safe_dump({"hypervisors": {"hosts": hosts}}))
    if group_vars is not None:
        (directory / "group_vars" / "hypervisors.yml").write_text(yaml.safe_dump(group_vars))


def test_capacity_adds_up_the_hypervisors_with_host_vars_over_group_vars(tmp_path):
    write_inventory(
        tmp_path,
        {"h1": {"ltb_capacity_cpus": 8}, "h2": {"ltb_capacity_memory": "2GiB"}},
        {"ltb_capacity_cpus": 4, "ltb_capacity_memory": 1024},
    )
    capacity = hypervisor_capacity(tmp_path)
    assert (capacity.cpus, capacity.memory_bytes) == (12.0, 1024 + 2048 * MIB)


def test_an_unset_capacity_is_this_machines_own(tmp_path):
    write_inventory(tmp_path, {"localhost": {"ansible_connection": "local"}})
    machine = machine_capacity()
    assert hypervisor_capacity(tmp_path) == machine
    assert machine.cpus >= 1 and machine.memory_bytes > 0


def test_a_capacity_that_is_not_a_size_is_an_error_naming_the_hypervisor(tmp_path):
    write_inventory(tmp_path, {"h1": {"ltb_capacity_memory": "lots"}})
    with pytest.raises(ValueError, match="hypervisor h1"):
        hypervisor_capacity(tmp_path)


def test_the_quota_week_starts_on_monday_at_midnight_utc():
    sunday_night = datetime(2030, 5, 12, 23, 59, tzinfo=UTC)
    assert week_start(sunday_night) == datetime(2030, 5, 6, tzinfo=UTC)
    assert week_start(datetime(2030, 5, 13, 0, 0, tzinfo=UTC)) == datetime(2030, 5, 13, tzinfo=UTC)
