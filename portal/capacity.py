"""The hypervisors' capacity as the portal sees it: may a lab run from one moment to another
without over-committing a hypervisor's CPUs or memory, on which one (or, spread, on which
ones: `place`), and how large a lab still fits over a week (the calendar). The placement is
store.capacity's; the capacity is the inventory's (LTB_HYPERVISORS, read at each check, so
a changed inventory holds at once), and so is the drain: a hypervisor with `ltb_drain: true`
takes no new lab or booking, and what runs or is booked there stays.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

from apiflask import HTTPError
from flask import current_app, has_request_context

from ltb import model
from ltb.topology import parse_lab
from portal.auth import current_user
from store.capacity import (
    Booking,
    Capacity,
    Needs,
    NoRoom,
    bookings,
    draining_hypervisors,
    hypervisor_capacities,
    hypervisor_capacity,
    lab_needs,
    node_needs,
    placement,
    spread,
)
from store.db import db
from store.models import Reservation, Role, User, utcnow
from store.placement import (
    PinnedToDraining,
    Placed,
    place_lab,
    refusal_text,
    room_for_new_labs,
)

GIB = 1024**3


def capacity() -> Capacity:
    """All the hypervisors' CPUs and memory together."""
    return hypervisor_capacity(Path(current_app.config["LTB_HYPERVISORS"]))


def capacities() -> dict[str, Capacity]:
    """Each hypervisor's CPUs and memory, in the inventory's order."""
    return hypervisor_capacities(Path(current_app.config["LTB_HYPERVISORS"]))


def draining() -> frozenset[str]:
    """The hypervisors that take no new labs (`ltb_drain: true` in the inventory)."""
    return draining_hypervisors(Path(current_app.config["LTB_HYPERVISORS"]))


class OverCommitted(HTTPError):
    """409: no hypervisor has room for the lab (`one`: on one hypervisor; else not even
    spread over several); says in what, when, what each has free
    and what holds it then: the caller's own bookings by name, other users' only as a count
    (a student learns nothing of other users' labs; an admin sees them all)."""

    def __init__(self, refusal: NoRoom, asked: Needs, caller: User | None, one: bool = True):
        named = [b.what for b in refusal.holders if _may_name(caller, b)]
        others = len(refusal.holders) - len(named)
        held = named + ([f"{others} booking(s) of other users"] if others else [])
        super().__init__(
            409,
            refusal_text(refusal, asked.cpus, asked.memory_bytes, held, one),
            {
                "draining": list(refusal.draining),
                "resource": refusal.resource,
                "at": refusal.at.isoformat(),
                "asked": {"cpus": asked.cpus, "memory_bytes": asked.memory_bytes},
                "free": {
                    host: {"cpus": room.cpus, "memory_bytes": room.memory_bytes}
                    for host, room in refusal.free.items()
                },
                "booked_by": named,
                "booked_by_others": others,
            },
        )


def _may_name(caller: User | None, booking: Booking) -> bool:
    return caller is not None and (caller.role == Role.ADMIN or booking.owner_id == caller.id)


def check_capacity(
    needs: Needs,
    start_at: datetime,
    end_at: datetime,
    except_reservation: int | None = None,
    on: str | None = None,
) -> str:
    """The hypervisor a lab runs on from start_at to end_at: the first not draining with
    room for it at every moment (store.capacity.placement); OverCommitted if none has.
    `on`: the lab already runs there (a started reservation whose end moves), so only that
    hypervisor counts, draining or not. The caller holds store.capacity's booking lock
    (lock_bookings) until it has recorded the lab or reservation."""
    held = bookings(
        db.session, start_at, end_at, now=utcnow(), except_reservation=except_reservation
    )
    each = capacities()
    if on is None:
        chosen = placement(each, held, needs, start_at, end_at, draining())
    else:
        # Bookings placed elsewhere still count where they are: free_at sees all of them.
        chosen = placement(each, held, needs, start_at, end_at, set(each) - {on})
        chosen = replace(chosen, draining=()) if isinstance(chosen, NoRoom) else chosen
    if isinstance(chosen, NoRoom):
        # Outside a request (a command, a job) nobody is asking: name no one's bookings.
        caller = current_user() if has_request_context() else None
        raise OverCommitted(chosen, needs, caller)
    return chosen


def place(
    lab: model.Lab,
    start_at: datetime,
    end_at: datetime,
    except_reservation: int | None = None,
) -> Placed:
    """Where the lab runs from start_at to end_at (store.placement.place_lab: on the first
    hypervisor not draining with room for it at every moment, else spread over several, its
    topology's pinned nodes where they are pinned); OverCommitted if even spread it does not
    fit, 409 naming the pin's place and the hypervisor if it pins a node to a draining one.
    The caller holds the booking lock (lock_bookings), as for check_capacity."""
    inventory = Path(current_app.config["LTB_HYPERVISORS"])
    try:
        chosen = place_lab(db.session, inventory, lab, start_at, end_at, except_reservation)
    except PinnedToDraining as error:
        raise HTTPError(
            409,
            str(error),
            {
                "draining": sorted({hypervisor for _, hypervisor in error.pins}),
                "problems": [
                    {"place": place, "message": f"hypervisor {hypervisor} is draining"}
                    for place, hypervisor in error.pins
                ],
            },
        ) from None
    if isinstance(chosen, NoRoom):
        caller = current_user() if has_request_context() else None
        raise OverCommitted(chosen, lab_needs(lab), caller, one=False)
    return chosen


def place_reservation(
    reservation: Reservation, start_at: datetime, end_at: datetime, started: bool
) -> Placed:
    """Where a reservation moved to [start_at, end_at) runs: one still to start is placed
    anew (`place`, its own old time not counted); a started one runs where it runs, so each
    of its nodes must still have room there at its new end, draining or not."""
    lab = parse_lab(reservation.topology, f"reservation {reservation.id}")
    if not started or reservation.hypervisor is None:
        if started:  # booked before reservations recorded a hypervisor: one, as before
            return Placed(
                check_capacity(lab_needs(lab), start_at, end_at, except_reservation=reservation.id)
            )
        return place(lab, start_at, end_at, except_reservation=reservation.id)
    held = bookings(db.session, start_at, end_at, now=utcnow(), except_reservation=reservation.id)
    where = reservation.placement or {}
    pinned = {
        n.name: where.get(n.name) or n.hypervisor or reservation.hypervisor for n in lab.nodes
    }
    chosen = spread(capacities(), held, node_needs(lab), [], start_at, end_at, (), pinned)
    if isinstance(chosen, NoRoom):
        caller = current_user() if has_request_context() else None
        raise OverCommitted(chosen, lab_needs(lab), caller, one=False)
    return Placed(reservation.hypervisor, reservation.placement)


def calendar(start: datetime, end: datetime, step: timedelta) -> dict:
    """The largest lab that still fits in each step of [start, end)
    (store.placement.room_for_new_labs): `free_*`, what one hypervisor has free throughout
    the step (any lab up to it fits); `spread_*`, what the hypervisors that take new labs
    have free together (a lab up to it fits spread, when each node fits on one of them)."""
    total = capacity()
    each = capacities()
    closed = draining()
    held = bookings(db.session, start, end, now=utcnow())
    slots = []
    moment = start
    while moment < end:
        slot_end = min(moment + step, end)
        one, spread_over = room_for_new_labs(each, held, moment, slot_end, closed)
        slots.append(
            {
                "start": moment.isoformat(),
                "end": slot_end.isoformat(),
                "free_cpus": round(one.cpus, 3),
                "free_memory_bytes": one.memory_bytes,
                "spread_cpus": round(spread_over.cpus, 3),
                "spread_memory_bytes": spread_over.memory_bytes,
                "labs": sum(1 for b in held if _overlaps(b, moment, slot_end)),
            }
        )
        moment = slot_end
    return {
        "capacity": {"cpus": total.cpus, "memory_bytes": total.memory_bytes},
        "step_seconds": int(step.total_seconds()),
        "slots": slots,
    }


def _overlaps(booking: Booking, start: datetime, end: datetime) -> bool:
    return booking.start_at < end and (booking.end_at is None or booking.end_at > start)
