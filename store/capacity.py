"""What labs need of the hypervisors, what the hypervisors have, and what is booked when.

A lab needs CPUs, memory and nodes (`lab_needs`, from its model). The hypervisors have the
CPUs and memory that their inventory says (`ltb_capacity_cpus`, `ltb_capacity_memory`, the
controller's own when unset: `hypervisor_capacity`). What is booked at a moment is the sum of
the reservations that hold it and of the labs that run outside any reservation (those run
until removed, so they hold every moment from now on): `bookings` lists them, `peak` sweeps
an interval's edges for the highest load. The portal (reservations, quotas, the capacity
calendar) and the jobs read these; nothing here needs the web application.

A lab runs on ONE hypervisor (it does not span them), so whether a lab fits is a placement,
not a sum: at every moment, the bookings that hold it are placed first-fit onto the
hypervisors of the inventory, each with its own CPUs and memory (`free_at`), and the lab
needs one hypervisor with room for it at every moment of its time (`placement`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import yaml
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ltb import kinds, model
from ltb.spec import memory_bytes
from ltb.topology import TopologyError, parse_lab
from store.models import Lab, LabState, Reservation, ReservationState

# Reservations that still hold (or will hold) their time.
HOLDING_STATES = (ReservationState.SCHEDULED.value, ReservationState.STARTED.value)
# Advisory lock (first key) that serialises bookings: two requests cannot both see room.
CAPACITY_LOCK_SPACE = 0x17D


@dataclass(frozen=True)
class Needs:
    """What a lab takes of a hypervisor while it runs."""

    cpus: float
    memory_bytes: int
    nodes: int

    def __add__(self, other: Needs) -> Needs:
        return Needs(
            self.cpus + other.cpus,
            self.memory_bytes + other.memory_bytes,
            self.nodes + other.nodes,
        )


NOTHING = Needs(0.0, 0, 0)


def lab_needs(lab: model.Lab) -> Needs:
    """The CPUs, memory and nodes a lab takes: each node's `resources` where the topology
    sets them, else its kind's default (ltb.kinds). Fractional CPUs count whole for a kind
    that gets whole CPUs (a VM: roles/vm_node gives it whole vCPUs)."""
    cpus, memory = 0.0, 0
    for node in lab.nodes:
        kind = kinds.get(node.kind)
        node_cpus = node.cpus if node.cpus is not None else kind.default_cpus
        if kind.whole_cpus:
            node_cpus = float(math.ceil(node_cpus))
        cpus += node_cpus
        memory += node.memory_bytes if node.memory_bytes is not None else kind.default_memory_bytes
    return Needs(round(cpus, 3), memory, len(lab.nodes))


def topology_needs(topology: str) -> Needs:
    return lab_needs(parse_lab(topology, "lab"))


@dataclass(frozen=True)
class Capacity:
    cpus: float
    memory_bytes: int


def machine_capacity() -> Capacity:
    """This machine's CPUs and memory (the default of a hypervisor that states none)."""
    memory = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory = int(line.split()[1]) * 1024
    return Capacity(float(os.cpu_count() or 1), memory)


def _memory(value: object, where: str) -> int:
    if isinstance(value, int):
        return value
    try:
        return memory_bytes(str(value))
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None


def hypervisor_vars(inventory: Path) -> dict[str, dict]:
    """The variables of each hypervisor of the inventory directory (hosts.yaml, group
    `hypervisors`), in its order: its host vars over group_vars/hypervisors.yml over all.yml."""
    hosts = (yaml.safe_load((inventory / "hosts.yaml").read_text()) or {}).get("hypervisors", {})
    group_vars: dict = {}
    for name in ("all.yml", "hypervisors.yml"):
        path = inventory / "group_vars" / name
        if path.exists():
            group_vars |= yaml.safe_load(path.read_text()) or {}
    return {str(host): group_vars | (v or {}) for host, v in (hosts.get("hosts") or {}).items()}


def hypervisor_capacities(inventory: Path) -> dict[str, Capacity]:
    """The CPUs and memory of each hypervisor of the inventory directory: each host's
    `ltb_capacity_cpus` and `ltb_capacity_memory` (bytes, or a size like 16GiB), from its
    vars (hypervisor_vars), else this machine's own."""
    machine = machine_capacity()
    found = {}
    for host, host_found in hypervisor_vars(inventory).items():
        where = f"{inventory}: hypervisor {host}"
        found[str(host)] = Capacity(
            float(host_found.get("ltb_capacity_cpus", machine.cpus)),
            _memory(host_found.get("ltb_capacity_memory", machine.memory_bytes), where),
        )
    return found


def draining_hypervisors(inventory: Path) -> frozenset[str]:
    """The hypervisors whose vars say `ltb_drain: true`: no new lab or booking is placed on
    them; what runs or is booked there stays (see `placement`)."""
    draining = set()
    for host, found in hypervisor_vars(inventory).items():
        value = found.get("ltb_drain", False)
        if not isinstance(value, bool):
            raise ValueError(
                f"{inventory}: hypervisor {host}: ltb_drain must be true or false, not {value!r}"
            )
        if value:
            draining.add(host)
    return frozenset(draining)


def hypervisor_capacity(inventory: Path) -> Capacity:
    """The CPUs and memory of all the hypervisors of the inventory together (one pool)."""
    each = hypervisor_capacities(inventory).values()
    return Capacity(sum((c.cpus for c in each), 0.0), sum(c.memory_bytes for c in each))


@dataclass(frozen=True)
class Booking:
    """Something that holds capacity from `start_at` to `end_at` (None: until removed)."""

    what: str  # e.g. "reservation 12" or "lab r1-abc123"
    owner_id: int | None
    start_at: datetime
    end_at: datetime | None
    needs: Needs
    # Where it runs, if that is known (a lab's recorded hypervisor); else placed first-fit.
    hypervisor: str | None = None


def lock_bookings(session: Session) -> None:
    """Serialise bookings until the caller's transaction ends."""
    session.execute(select(func.pg_advisory_xact_lock(CAPACITY_LOCK_SPACE, 0)))


def reservation_needs(reservation: Reservation) -> Needs:
    if reservation.cpus is None or reservation.memory_bytes is None:
        return topology_needs(reservation.topology)
    return Needs(reservation.cpus, reservation.memory_bytes, reservation.nodes or 0)


def bookings(
    session: Session,
    start_at: datetime,
    end_at: datetime,
    *,
    now: datetime,
    owner_id: int | None = None,
    except_reservation: int | None = None,
) -> list[Booking]:
    """Everything that holds capacity at some moment of [start_at, end_at): reservations
    that hold their time, and labs not removed that no such reservation holds (from `now`
    on, until removed). Only those of `owner_id` if given."""
    query = select(Reservation).where(
        Reservation.state.in_(HOLDING_STATES),
        Reservation.start_at < end_at,
        Reservation.end_at > start_at,
    )
    if owner_id is not None:
        query = query.where(Reservation.owner_id == owner_id)
    if except_reservation is not None:
        query = query.where(Reservation.id != except_reservation)
    found = [
        Booking(
            f"reservation {r.id}",
            r.owner_id,
            r.start_at,
            r.end_at,
            reservation_needs(r),
            r.hypervisor,
        )
        for r in session.scalars(query)
    ]
    held_by_reservations = select(Reservation.lab_name).where(Reservation.state.in_(HOLDING_STATES))
    labs = select(Lab).where(
        Lab.state != LabState.REMOVED.value, Lab.name.not_in(held_by_reservations)
    )
    if owner_id is not None:
        labs = labs.where(Lab.owner_id == owner_id)
    for lab in session.scalars(labs):
        try:
            needs = topology_needs(lab.topology)
        except TopologyError:
            continue  # a lab of the CLI whose topology no longer parses: nothing to count
        found.append(Booking(f"lab {lab.name}", lab.owner_id, now, None, needs, lab.hypervisor))
    return found


@dataclass(frozen=True)
class Peak:
    """The highest load of an interval, and when it starts."""

    cpus: float
    cpus_at: datetime
    memory_bytes: int
    memory_at: datetime
    labs: int
    labs_at: datetime
    nodes: int
    nodes_at: datetime


def load_at(moment: datetime, held: Iterable[Booking]) -> tuple[Needs, int]:
    """The sum of what the bookings hold at `moment`, and how many hold it."""
    total, count = NOTHING, 0
    for booking in held:
        if booking.start_at <= moment and (booking.end_at is None or moment < booking.end_at):
            total += booking.needs
            count += 1
    return total, count


def peak(held: list[Booking], start_at: datetime, end_at: datetime) -> Peak:
    """The highest load of [start_at, end_at): the load only rises where a booking starts,
    so the interval's start and the starts inside it are the moments to look at."""
    moments = {start_at} | {b.start_at for b in held if start_at < b.start_at < end_at}
    best = Peak(0.0, start_at, 0, start_at, 0, start_at, 0, start_at)
    for moment in sorted(moments):
        load, count = load_at(moment, held)
        if load.cpus > best.cpus:
            best = replace(best, cpus=load.cpus, cpus_at=moment)
        if load.memory_bytes > best.memory_bytes:
            best = replace(best, memory_bytes=load.memory_bytes, memory_at=moment)
        if count > best.labs:
            best = replace(best, labs=count, labs_at=moment)
        if load.nodes > best.nodes:
            best = replace(best, nodes=load.nodes, nodes_at=moment)
    return best


# Placement ---------------------------------------------------------------------------------

# CPUs are fractional (containers take 0.25): compare with this much slack.
CPU_SLACK = 1e-6


def _fits(free: Capacity, needs: Needs) -> bool:
    return free.cpus + CPU_SLACK >= needs.cpus and free.memory_bytes >= needs.memory_bytes


def _holds(booking: Booking, moment: datetime) -> bool:
    return booking.start_at <= moment and (booking.end_at is None or moment < booking.end_at)


def free_at(
    hypervisors: dict[str, Capacity], held: Iterable[Booking], moment: datetime
) -> dict[str, Capacity]:
    """What each hypervisor has free at `moment` once the bookings that hold it are placed:
    a booking whose hypervisor is known stays there (a hypervisor no longer in the inventory
    holds it nowhere); the others go first-fit, in order of their start, onto the first
    hypervisor (in the inventory's order) with room; one that fits nowhere goes where most
    CPUs are free and over-commits it (negative room: nothing more fits there)."""
    free = dict(hypervisors)
    active = sorted(
        (b for b in held if _holds(b, moment)),
        key=lambda b: (b.hypervisor is None, b.start_at, b.what),
    )
    for booking in active:
        where = booking.hypervisor
        if where is None:
            where = next((h for h, room in free.items() if _fits(room, booking.needs)), None)
            if where is None and free:
                where = max(free, key=lambda h: free[h].cpus)
        if where in free:
            room = free[where]
            free[where] = Capacity(
                room.cpus - booking.needs.cpus, room.memory_bytes - booking.needs.memory_bytes
            )
    return free


def _moments(held: Iterable[Booking], start_at: datetime, end_at: datetime) -> list[datetime]:
    """The moments of [start_at, end_at) where what holds the hypervisors changes: first-fit
    is not monotone (an end can move later bookings), so ends count as well as starts."""
    edges = {start_at}
    for booking in held:
        for edge in (booking.start_at, booking.end_at):
            if edge is not None and start_at < edge < end_at:
                edges.add(edge)
    return sorted(edges)


@dataclass(frozen=True)
class NoRoom:
    """Why a lab fits on no hypervisor: at `at`, `resource` ("CPU", "memory", or "CPU and
    memory" when each is free somewhere but not both on one hypervisor) of `free`, and the
    bookings that hold the hypervisors then. `draining`: the draining hypervisors, when one
    of them would have had room (the drain is why)."""

    at: datetime
    resource: str
    free: dict[str, Capacity]
    holders: list[Booking]
    draining: tuple[str, ...] = ()


def placement(
    hypervisors: dict[str, Capacity],
    held: list[Booking],
    needs: Needs,
    start_at: datetime,
    end_at: datetime,
    draining: Collection[str] = (),
) -> str | NoRoom:
    """The first hypervisor (in the inventory's order) that is not draining and has room for
    `needs` at every moment of [start_at, end_at) beside what `held` places there, or why
    there is none: NoRoom at the first moment where no hypervisor that had room so far still
    has it, naming the draining ones if one of those would have had room. Bookings already
    placed on a draining hypervisor keep holding it."""
    open_to_new = [h for h in hypervisors if h not in draining]
    chosen = _first_with_room(hypervisors, open_to_new, held, needs, start_at, end_at)
    if isinstance(chosen, NoRoom) and len(open_to_new) < len(hypervisors):
        # Is the drain why? Only if a draining hypervisor would have had room.
        anywhere = _first_with_room(hypervisors, list(hypervisors), held, needs, start_at, end_at)
        if isinstance(anywhere, str):
            chosen = replace(chosen, draining=tuple(h for h in hypervisors if h in draining))
    return chosen


def _first_with_room(
    hypervisors: dict[str, Capacity],
    candidates: list[str],
    held: list[Booking],
    needs: Needs,
    start_at: datetime,
    end_at: datetime,
) -> str | NoRoom:
    for moment in _moments(held, start_at, end_at):
        free = free_at(hypervisors, held, moment)
        fitting = [h for h in candidates if _fits(free[h], needs)]
        if not fitting:
            tried = {h: free[h] for h in candidates}
            if not any(room.cpus + CPU_SLACK >= needs.cpus for room in tried.values()):
                resource = "CPU"
            elif not any(room.memory_bytes >= needs.memory_bytes for room in tried.values()):
                resource = "memory"
            else:
                resource = "CPU and memory"
            holders = [b for b in held if _holds(b, moment)]
            return NoRoom(moment, resource, free, holders)
        candidates = fitting
    return candidates[0] if candidates else NoRoom(start_at, "CPU", {}, [])


def largest_free(
    hypervisors: dict[str, Capacity],
    held: list[Booking],
    start_at: datetime,
    end_at: datetime,
    draining: Collection[str] = (),
) -> tuple[str | None, Capacity]:
    """The largest lab that still fits in all of [start_at, end_at): the hypervisor (not
    draining) with the most CPUs free throughout (then memory), and what it has free."""
    lowest = dict(hypervisors)
    for moment in _moments(held, start_at, end_at):
        for host, room in free_at(hypervisors, held, moment).items():
            low = lowest[host]
            lowest[host] = Capacity(
                min(low.cpus, room.cpus), min(low.memory_bytes, room.memory_bytes)
            )
    lowest = {host: room for host, room in lowest.items() if host not in draining}
    if not lowest:
        return None, Capacity(0.0, 0)
    best = max(lowest, key=lambda h: (lowest[h].cpus, lowest[h].memory_bytes))
    room = lowest[best]
    return best, Capacity(max(room.cpus, 0.0), max(room.memory_bytes, 0))
