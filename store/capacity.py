"""What labs need of the hypervisors, what the hypervisors have, and what is booked when.

A lab needs CPUs, memory and nodes (`lab_needs`, from its model). The hypervisors have the
CPUs and memory that their inventory says (`ltb_capacity_cpus`, `ltb_capacity_memory`, the
controller's own when unset: `hypervisor_capacity`). What is booked at a moment is the sum of
the reservations that hold it and of the labs that run outside any reservation (those run
until removed, so they hold every moment from now on): `bookings` lists them, `peak` sweeps
an interval's edges for the highest load. The portal (reservations, quotas, the capacity
calendar) and the jobs read these; nothing here needs the web application.

Whether a lab fits is a placement, not a sum: at every moment, the bookings that hold it are
placed onto the hypervisors of the inventory, each with its own CPUs and memory (`free_at`).
A lab goes to one hypervisor with room for it at every moment of its time (`placement`), or,
when none has, is spread: its nodes are assigned to several hypervisors (`spread`), and each
part then holds only its own hypervisor (`Booking.parts`). So does a lab spread by hand (its
nodes' `hypervisor:` keys).
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Iterable, Mapping
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


def node_needs(lab: model.Lab) -> dict[str, Needs]:
    """What each node of the lab takes: its `resources` where the topology sets them, else
    its kind's default (ltb.kinds). Fractional CPUs count whole for a kind that gets whole
    CPUs (a VM: roles/vm_node gives it whole vCPUs)."""
    found = {}
    for node in lab.nodes:
        kind = kinds.get(node.kind)
        cpus = node.cpus if node.cpus is not None else kind.default_cpus
        if kind.whole_cpus:
            cpus = float(math.ceil(cpus))
        memory = node.memory_bytes if node.memory_bytes is not None else kind.default_memory_bytes
        found[node.name] = Needs(cpus, memory, 1)
    return found


def lab_needs(lab: model.Lab) -> Needs:
    """The CPUs, memory and nodes a lab takes: the sum of its nodes' (node_needs)."""
    total = sum(node_needs(lab).values(), NOTHING)
    return Needs(round(total.cpus, 3), total.memory_bytes, total.nodes)


def parts_of(
    lab: model.Lab, hypervisor: str, placement: Mapping[str, str] | None = None
) -> tuple[tuple[str, Needs], ...]:
    """What a lab holds on each hypervisor it runs on, in the order they first appear: a node
    runs where `placement` (node -> hypervisor, recorded by `spread`) puts it, else where its
    topology's `hypervisor:` key pins it, else on the lab's `hypervisor`."""
    parts: dict[str, Needs] = {}
    for name, needs in node_needs(lab).items():
        where = (placement or {}).get(name) or lab.node(name).hypervisor or hypervisor
        parts[where] = parts.get(where, NOTHING) + needs
    return tuple(
        (where, Needs(round(n.cpus, 3), n.memory_bytes, n.nodes)) for where, n in parts.items()
    )


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
    # A spread lab: what it holds on each of its hypervisors (parts_of); `hypervisor` is then
    # not used, and `needs` is the sum of the parts.
    parts: tuple[tuple[str, Needs], ...] = ()


def lock_bookings(session: Session) -> None:
    """Serialise bookings until the caller's transaction ends."""
    session.execute(select(func.pg_advisory_xact_lock(CAPACITY_LOCK_SPACE, 0)))


def reservation_needs(reservation: Reservation) -> Needs:
    if reservation.cpus is None or reservation.memory_bytes is None:
        return topology_needs(reservation.topology)
    return Needs(reservation.cpus, reservation.memory_bytes, reservation.nodes or 0)


def spread_parts(
    topology: str, hypervisor: str | None, placement: Mapping[str, str] | None
) -> tuple[tuple[str, Needs], ...]:
    """The parts of a lab on more than one hypervisor (automatically or by hand), else ()."""
    if hypervisor is None or (not placement and "hypervisor" not in topology):
        return ()  # one hypervisor (the common case): no parsing
    try:
        parts = parts_of(parse_lab(topology, "lab"), hypervisor, placement)
    except TopologyError:
        return ()
    return parts if len(parts) > 1 else ()


def _booking(
    what: str,
    owner_id: int | None,
    start_at: datetime,
    end_at: datetime | None,
    needs: Needs,
    hypervisor: str | None,
    topology: str,
    placement: Mapping[str, str] | None,
) -> Booking:
    parts = spread_parts(topology, hypervisor, placement)
    if len(parts) == 1:
        hypervisor = parts[0][0]
    return Booking(what, owner_id, start_at, end_at, needs, hypervisor, parts)


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
        _booking(
            f"reservation {r.id}",
            r.owner_id,
            r.start_at,
            r.end_at,
            reservation_needs(r),
            r.hypervisor,
            r.topology,
            r.placement,
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
        found.append(
            _booking(
                f"lab {lab.name}",
                lab.owner_id,
                now,
                None,
                needs,
                lab.hypervisor,
                lab.topology,
                lab.placement,
            )
        )
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
        key=lambda b: (b.hypervisor is None and not b.parts, b.start_at, b.what),
    )
    for booking in active:
        if booking.parts:  # a spread lab: each part where it runs
            for where, needs in booking.parts:
                if where in free:
                    room = free[where]
                    free[where] = Capacity(
                        room.cpus - needs.cpus, room.memory_bytes - needs.memory_bytes
                    )
            continue
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
    lowest = free_throughout(hypervisors, held, start_at, end_at)
    lowest = {host: room for host, room in lowest.items() if host not in draining}
    if not lowest:
        return None, Capacity(0.0, 0)
    best = max(lowest, key=lambda h: (lowest[h].cpus, lowest[h].memory_bytes))
    room = lowest[best]
    return best, Capacity(max(room.cpus, 0.0), max(room.memory_bytes, 0))


def free_throughout(
    hypervisors: dict[str, Capacity], held: list[Booking], start_at: datetime, end_at: datetime
) -> dict[str, Capacity]:
    """What each hypervisor has free at every moment of [start_at, end_at): its least room."""
    lowest = dict(hypervisors)
    for moment in _moments(held, start_at, end_at):
        for host, room in free_at(hypervisors, held, moment).items():
            low = lowest[host]
            lowest[host] = Capacity(
                min(low.cpus, room.cpus), min(low.memory_bytes, room.memory_bytes)
            )
    return lowest


# Spreading ---------------------------------------------------------------------------------


def spread(
    hypervisors: dict[str, Capacity],
    held: list[Booking],
    nodes: Mapping[str, Needs],
    links: Iterable[Iterable[str]],
    start_at: datetime,
    end_at: datetime,
    draining: Collection[str] = (),
    pinned: Mapping[str, str] | None = None,
) -> dict[str, str] | NoRoom:
    """Where each node of a lab runs from start_at to end_at (node -> hypervisor), beside what
    `held` places on the hypervisors, or why it cannot run (NoRoom). Deterministic:

    - `pinned` nodes (a topology's `hypervisor:` keys) stay where they are pinned, draining
      or not, and hold that hypervisor's room first;
    - the other nodes all go to the first hypervisor (inventory order, not draining) with room
      for all of them at every moment, as `placement` would choose;
    - else they are spread: the groups of linked nodes, largest first, each to the first
      hypervisor with room for the whole group; a group that fits on none is split, its nodes
      taken outwards from its largest one along its links, each to a hypervisor with room where
      most of its linked nodes already are (then the inventory's order): few links cross.

    A hypervisor has room for a part if it has it at every moment (free_throughout)."""
    pinned = dict(pinned or {})
    chosen = _assign(hypervisors, held, nodes, links, start_at, end_at, draining, pinned)
    if not isinstance(chosen, NoRoom) or not draining:
        return chosen
    # Is the drain why? Only if the draining hypervisors would have had room.
    anywhere = _assign(hypervisors, held, nodes, links, start_at, end_at, (), pinned)
    if isinstance(anywhere, dict):
        return replace(chosen, draining=tuple(h for h in hypervisors if h in draining))
    return chosen


def _assign(
    hypervisors: dict[str, Capacity],
    held: list[Booking],
    nodes: Mapping[str, Needs],
    links: Iterable[Iterable[str]],
    start_at: datetime,
    end_at: datetime,
    draining: Collection[str],
    pinned: dict[str, str],
) -> dict[str, str] | NoRoom:
    room = free_throughout(hypervisors, held, start_at, end_at)
    open_to_new = [h for h in hypervisors if h not in draining]
    placed: dict[str, str] = {}

    def take(node: str, where: str) -> None:
        placed[node] = where
        if where in room:
            left, needs = room[where], nodes[node]
            room[where] = Capacity(left.cpus - needs.cpus, left.memory_bytes - needs.memory_bytes)

    for node in sorted(pinned):
        if node in nodes:
            take(node, pinned[node])
    if any(
        room[h].cpus < -CPU_SLACK or room[h].memory_bytes < 0
        for h in set(pinned.values()) & set(room)
    ):
        return _no_room(hypervisors, held, nodes, pinned, start_at, end_at, open_to_new, {})
    free_nodes = [n for n in nodes if n not in placed]
    total = sum((nodes[n] for n in free_nodes), NOTHING)
    whole = next((h for h in open_to_new if _fits(room[h], total)), None)
    if whole is not None:
        for node in free_nodes:
            take(node, whole)
        return placed

    neighbours: dict[str, set[str]] = {n: set() for n in nodes}
    for link in links:
        ends = [n for n in dict.fromkeys(link) if n in nodes]
        for end in ends:
            neighbours[end].update(e for e in ends if e != end)

    def size(names: Iterable[str]) -> tuple[float, int]:
        total = sum((nodes[n] for n in names), NOTHING)
        return (total.cpus, total.memory_bytes)

    for group in sorted(
        _groups(free_nodes, neighbours), key=lambda g: (size(g), min(g)), reverse=True
    ):
        group_needs = sum((nodes[n] for n in group), NOTHING)
        where = next((h for h in open_to_new if _fits(room[h], group_needs)), None)
        if where is not None:
            for node in sorted(group):
                take(node, where)
            continue
        for node in _outwards(group, neighbours, nodes):
            fitting = [h for h in open_to_new if _fits(room[h], nodes[node])]
            if not fitting:
                return _no_room(
                    hypervisors, held, nodes, pinned, start_at, end_at, open_to_new, placed, node
                )
            near = {h: sum(1 for m in neighbours[node] if placed.get(m) == h) for h in fitting}
            take(node, max(fitting, key=lambda h: (near[h], -fitting.index(h))))
    return placed


def _groups(names: list[str], neighbours: dict[str, set[str]]) -> list[list[str]]:
    """The groups of `names` that links join (through `names` only)."""
    inside, seen, groups = set(names), set(), []
    for start in names:
        if start in seen:
            continue
        group, todo = [], [start]
        seen.add(start)
        while todo:
            node = todo.pop()
            group.append(node)
            for other in sorted(neighbours[node] & inside - seen):
                seen.add(other)
                todo.append(other)
        groups.append(group)
    return groups


def _outwards(
    group: list[str], neighbours: dict[str, set[str]], nodes: Mapping[str, Needs]
) -> list[str]:
    """The group's nodes breadth-first from its largest, larger neighbours first."""

    def key(n: str) -> tuple:
        return (-nodes[n].cpus, -nodes[n].memory_bytes, n)

    inside = set(group)
    first = min(group, key=key)
    order, seen = [first], {first}
    for node in order:
        for other in sorted(neighbours[node] & inside - seen, key=key):
            seen.add(other)
            order.append(other)
    return order


def _no_room(
    hypervisors: dict[str, Capacity],
    held: list[Booking],
    nodes: Mapping[str, Needs],
    pinned: Mapping[str, str],
    start_at: datetime,
    end_at: datetime,
    open_to_new: list[str],
    placed: Mapping[str, str],
    homeless: str | None = None,
) -> NoRoom:
    """Why a lab's nodes do not fit (the node `homeless` fits nowhere; None: its pinned nodes
    over-commit their hypervisors), at the moment of [start_at, end_at) when the hypervisors
    concerned have the least room."""
    if homeless is None:
        tried = sorted(set(pinned.values()) & set(hypervisors))
        short = sum((nodes[n] for n in pinned if n in nodes), NOTHING)
    else:
        tried, short = open_to_new, nodes[homeless]
    moments = _moments(held, start_at, end_at)
    at = min(
        moments,
        key=lambda m: sum(free_at(hypervisors, held, m)[h].cpus for h in tried) if tried else 0,
    )
    free = free_at(hypervisors, held, at)
    # What is left for the node once the lab's nodes already placed take their part (the
    # refusal says what the others leave free: `free`).
    left = dict(free)
    for node, where in placed.items():
        if where in left:
            room = left[where]
            left[where] = Capacity(
                room.cpus - nodes[node].cpus, room.memory_bytes - nodes[node].memory_bytes
            )
    rooms = [left[h] for h in tried]
    if not any(room.cpus + CPU_SLACK >= short.cpus for room in rooms):
        resource = "CPU"
    elif not any(room.memory_bytes >= short.memory_bytes for room in rooms):
        resource = "memory"
    else:
        resource = "CPU and memory"
    holders = [b for b in held if _holds(b, at)]
    return NoRoom(at, resource, {h: free[h] for h in hypervisors}, holders)
