"""Where a new lab runs: the one placement of every way a lab starts or is booked (the portal's
start now, booking and move, portal.capacity; the jobs CLI's deploy and reserve,
jobs.operator), and the words of a refusal.

A lab goes to the first hypervisor not draining with room for it at every moment of its time,
else is spread over several (store.capacity.spread), its topology's pinned nodes where they
are pinned. A pin (a node's `hypervisor:` key) to a draining hypervisor is refused: a drain
stops new placements there, pinned or not, while what runs or is booked there stays.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session

from ltb import model
from store.capacity import (
    Booking,
    Capacity,
    NoRoom,
    bookings,
    draining_hypervisors,
    free_throughout,
    hypervisor_capacities,
    node_needs,
    spread,
)
from store.models import utcnow

GIB = 1024**3


# How long a reservation may be, and so how far ahead a lab started now is checked (a lab runs
# until removed: checked to the end of time it would clash with every booking to come). The
# portal's LTB_MAX_RESERVATION_HOURS and the jobs CLI read the same variable.
MAX_RESERVATION_HOURS_ENV = "LTB_MAX_RESERVATION_HOURS"
DEFAULT_MAX_RESERVATION_HOURS = 8.0


def max_reservation_hours(environ) -> float:
    return float(environ.get(MAX_RESERVATION_HOURS_ENV, DEFAULT_MAX_RESERVATION_HOURS))


@dataclass(frozen=True)
class Placed:
    """Where a lab runs: `hypervisor`, the lab's (where most of its nodes are), and `nodes`,
    node -> hypervisor when its placement spread it (None: all on `hypervisor`, but for the
    nodes its topology pins elsewhere). Recorded with the lab or reservation."""

    hypervisor: str
    nodes: dict[str, str] | None = None


class PinnedToDraining(ValueError):
    """The topology pins nodes to draining hypervisors: `pins`, (place in the topology,
    hypervisor) of each."""

    def __init__(self, pins: list[tuple[str, str]]):
        self.pins = pins
        super().__init__(
            "; ".join(
                f"{place}: hypervisor {hypervisor} is draining (ltb_drain: true) and takes no "
                "new labs; pin the node to another hypervisor or leave its pin out"
                for place, hypervisor in pins
            )
        )


def draining_pins(lab: model.Lab, draining: frozenset[str]) -> list[tuple[str, str]]:
    """The lab's nodes pinned to a draining hypervisor: (place in the topology, hypervisor)."""
    return [
        (f"nodes.{node.name}.hypervisor", node.hypervisor)
        for node in lab.nodes
        if node.hypervisor in draining
    ]


def place_lab(
    session: Session,
    inventory: Path,
    lab: model.Lab,
    start_at: datetime,
    end_at: datetime,
    except_reservation: int | None = None,
) -> Placed | NoRoom:
    """Where the lab runs from start_at to end_at (see above), or why it fits nowhere, even
    spread (NoRoom). PinnedToDraining before anything else. The caller holds the booking lock
    (store.capacity.lock_bookings) until it has recorded the lab or reservation."""
    draining = draining_hypervisors(inventory)
    pins = draining_pins(lab, draining)
    if pins:
        raise PinnedToDraining(pins)
    held = bookings(session, start_at, end_at, now=utcnow(), except_reservation=except_reservation)
    each = hypervisor_capacities(inventory)
    pinned = {node.name: node.hypervisor for node in lab.nodes if node.hypervisor}
    links = [[end.node for end in link.endpoints] for link in lab.links]
    chosen = spread(each, held, node_needs(lab), links, start_at, end_at, draining, pinned)
    if isinstance(chosen, NoRoom):
        return chosen
    order = list(each)
    counts = {h: list(chosen.values()).count(h) for h in dict.fromkeys(chosen.values())}
    main = max(counts, key=lambda h: (counts[h], -order.index(h) if h in order else -len(order)))
    moved = any(where != main for node, where in chosen.items() if node not in pinned)
    return Placed(main, dict(chosen) if moved else None)


def room_for_new_labs(
    hypervisors: dict[str, Capacity],
    held: list[Booking],
    start_at: datetime,
    end_at: datetime,
    draining: frozenset[str] = frozenset(),
) -> tuple[Capacity, Capacity]:
    """How large a new lab still fits in all of [start_at, end_at), as place_lab sees room
    (what each hypervisor not draining has free throughout, store.capacity.free_throughout):
    on one hypervisor, that of the one with the most CPUs free (then memory): any lab up to
    it fits; and spread, the sum over them: a lab up to it fits when each of its nodes fits
    on one of them beside the others' (placement spreads it node by node)."""
    lowest = free_throughout(hypervisors, held, start_at, end_at)
    rooms = [
        Capacity(max(room.cpus, 0.0), max(room.memory_bytes, 0))
        for host, room in lowest.items()
        if host not in draining
    ]
    if not rooms:
        return Capacity(0.0, 0), Capacity(0.0, 0)
    one = max(rooms, key=lambda room: (room.cpus, room.memory_bytes))
    return one, Capacity(sum(r.cpus for r in rooms), sum(r.memory_bytes for r in rooms))


def refusal_text(
    refusal: NoRoom, cpus: float, memory_bytes: int, held: list[str], one: bool
) -> str:
    """Why a lab needing `cpus` and `memory_bytes` was refused (`one`: on one hypervisor;
    else not even spread over several): in what, when, what each hypervisor has free, and
    `held`, what holds them then as the reader may see it."""
    free = ", ".join(
        f"{host} {room.cpus:g} CPUs and {room.memory_bytes / GIB:g} GiB"
        for host, room in refusal.free.items()
    )
    # When a draining hypervisor would have had room, the drain is what refuses.
    why = (
        f"{', '.join(refusal.draining)} "
        f"{'is' if len(refusal.draining) == 1 else 'are'} draining (no new labs), and "
        "the hypervisors that take new labs have no room: their "
        if refusal.draining
        else "The hypervisors' "
    )
    return (
        f"{why}{refusal.resource} would be over-committed at "
        f"{refusal.at.isoformat()}: this lab needs {cpus:g} CPUs and "
        f"{memory_bytes / GIB:g} GiB{' on one hypervisor' if one else ''}; free then: "
        f"{free or 'none'} "
        f"(booked by {', '.join(held) or 'nothing'})"
    )
