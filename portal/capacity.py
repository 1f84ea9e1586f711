"""The hypervisors' capacity as the portal sees it: may a lab run from one moment to another
without over-committing their CPUs or memory, and how much is free over a week (the
calendar). The counting is store.capacity's; the capacity is the inventory's
(LTB_HYPERVISORS, read at each check, so a changed inventory holds at once).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from apiflask import HTTPError
from flask import current_app

from store.capacity import Booking, Capacity, Needs, bookings, hypervisor_capacity, peak
from store.db import db
from store.models import utcnow

GIB = 1024**3


def capacity() -> Capacity:
    return hypervisor_capacity(Path(current_app.config["LTB_HYPERVISORS"]))


class OverCommitted(HTTPError):
    """409: the hypervisors would be over-committed; says in what, when and by whom."""

    def __init__(
        self,
        resource: str,
        at: datetime,
        total: float,
        booked: float,
        asked: float,
        holders: list[str],
    ):
        unit = "GiB" if resource == "memory" else "CPUs"
        scale = GIB if resource == "memory" else 1
        super().__init__(
            409,
            f"The hypervisors' {resource} would be over-committed at {at.isoformat()}: "
            f"{total / scale:g} {unit} in all, {booked / scale:g} booked "
            f"({', '.join(holders) or 'nothing'}), this lab needs {asked / scale:g}",
            {
                "resource": resource,
                "at": at.isoformat(),
                "capacity": total,
                "booked": booked,
                "asked": asked,
                "booked_by": holders,
            },
        )


def check_capacity(
    needs: Needs,
    start_at: datetime,
    end_at: datetime,
    except_reservation: int | None = None,
) -> None:
    """Refuse (OverCommitted) a lab that would take the hypervisors over their CPUs or
    memory at any moment of [start_at, end_at). The caller holds store.capacity's booking
    lock (lock_bookings) until it has recorded the lab or reservation."""
    held = bookings(
        db.session, start_at, end_at, now=utcnow(), except_reservation=except_reservation
    )
    top = peak(held, start_at, end_at)
    total = capacity()
    checks = (
        ("CPU", total.cpus, top.cpus, needs.cpus, top.cpus_at),
        ("memory", total.memory_bytes, top.memory_bytes, needs.memory_bytes, top.memory_at),
    )
    for resource, have, booked, asked, moment in checks:
        if booked + asked > have:
            holders = [b.what for b in held if _holds(b, moment)]
            raise OverCommitted(resource, moment, have, booked, asked, holders)


def _holds(booking: Booking, moment: datetime) -> bool:
    return booking.start_at <= moment and (booking.end_at is None or moment < booking.end_at)


def calendar(start: datetime, end: datetime, step: timedelta) -> dict:
    """Free CPUs and memory in each step of [start, end): the capacity less the highest load
    within the step."""
    total = capacity()
    held = bookings(db.session, start, end, now=utcnow())
    slots = []
    moment = start
    while moment < end:
        slot_end = min(moment + step, end)
        top = peak(held, moment, slot_end)
        slots.append(
            {
                "start": moment.isoformat(),
                "end": slot_end.isoformat(),
                "free_cpus": round(total.cpus - top.cpus, 3),
                "free_memory_bytes": total.memory_bytes - top.memory_bytes,
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
