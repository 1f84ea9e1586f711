"""A user's quotas: running labs, nodes and memory at any moment, reservation hours per week.

A user's own quota columns hold where set; an empty one takes the platform's default
(portal.settings, LTB_QUOTA_*). What counts against them is what store.capacity counts
against the hypervisors: the user's reservations that hold their time and their labs that
run outside one. A refusal is a 409 that names the quota, its limit, what is in use and what
was asked for.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from apiflask import HTTPError
from flask import current_app
from sqlalchemy import select

from ltb import model
from portal.capacity import Placed, check_capacity, place
from store.capacity import HOLDING_STATES, Needs, bookings, lab_needs, lock_bookings, peak
from store.db import db
from store.models import Reservation, ReservationState, User, utcnow
from store.placement import DEFAULT_MAX_RESERVATION_HOURS

GIB = 1024**3
# Reservations that used or will use their hours (a cancelled or missed one did not).
COUNTED_STATES = (*HOLDING_STATES, ReservationState.ENDED.value)


class QuotaExceeded(HTTPError):
    def __init__(self, quota: str, limit: float, in_use: float, asked: float, when: str):
        super().__init__(
            409,
            f"Your quota of {quota} would be exceeded {when}: "
            f"limit {limit:g}, in use {in_use:g}, asked {asked:g}",
            {"quota": quota, "limit": limit, "in_use": in_use, "asked": asked},
        )


def quotas(user: User) -> dict[str, int]:
    """The user's quotas: their own where set, else the platform's defaults."""
    config = current_app.config

    def pick(own: int | None, setting: str, default: int) -> int:
        return own if own is not None else int(config.get(setting, default))

    return {
        "running_labs": pick(user.quota_running_labs, "LTB_QUOTA_RUNNING_LABS", 2),
        "nodes": pick(user.quota_nodes, "LTB_QUOTA_NODES", 10),
        "memory_bytes": pick(user.quota_memory_bytes, "LTB_QUOTA_MEMORY_BYTES", 8 * GIB),
        "reservation_hours_week": pick(
            user.quota_reservation_hours_week, "LTB_QUOTA_RESERVATION_HOURS_WEEK", 20
        ),
    }


def _check_concurrent(
    user: User,
    needs: Needs,
    start_at: datetime,
    end_at: datetime,
    except_reservation: int | None,
) -> None:
    limits = quotas(user)
    held = bookings(
        db.session,
        start_at,
        end_at,
        now=utcnow(),
        owner_id=user.id,
        except_reservation=except_reservation,
    )
    top = peak(held, start_at, end_at)
    checks = (
        ("running labs", limits["running_labs"], top.labs, 1, top.labs_at),
        ("nodes", limits["nodes"], top.nodes, needs.nodes, top.nodes_at),
        (
            "memory bytes",
            limits["memory_bytes"],
            top.memory_bytes,
            needs.memory_bytes,
            top.memory_at,
        ),
    )
    for quota, limit, in_use, asked, moment in checks:
        if in_use + asked > limit:
            raise QuotaExceeded(quota, limit, in_use, asked, f"at {moment.isoformat()}")


def check_lab_start(user: User, lab: Needs | model.Lab) -> Placed:
    """Where a lab started now runs (given its model, maybe spread: portal.capacity.place);
    refuse one that would take the user over a quota of running labs, nodes or memory
    (QuotaExceeded), or that no hypervisor has room for (portal.capacity.OverCommitted). It
    runs until removed, but is checked for the longest reservation from now
    (LTB_MAX_RESERVATION_HOURS): checked to the end of time, any lab would clash with every
    booking to come; bookings made later count it as running."""
    needs = lab if isinstance(lab, Needs) else lab_needs(lab)
    now = utcnow()
    hours = current_app.config.get("LTB_MAX_RESERVATION_HOURS", DEFAULT_MAX_RESERVATION_HOURS)
    until = now + timedelta(hours=float(hours))
    lock_bookings(db.session)
    _check_concurrent(user, needs, now, until, None)
    if isinstance(lab, Needs):
        return Placed(check_capacity(needs, now, until))
    return place(lab, now, until)


def week_start(moment: datetime) -> datetime:
    """Monday 00:00 UTC of the moment's week."""
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday())


def _hours_within(start: datetime, end: datetime, lo: datetime, hi: datetime) -> float:
    return max((min(end, hi) - max(start, lo)).total_seconds(), 0) / 3600


def check_reservation(
    user: User,
    needs: Needs,
    start_at: datetime,
    end_at: datetime,
    except_reservation: int | None = None,
) -> None:
    """Refuse (QuotaExceeded) a reservation that would take the user over a quota at any
    moment of it, or over their reservation hours in a calendar week (Monday to Monday, UTC)
    that it touches. `except_reservation`: the one being moved, counted at its new time."""
    _check_concurrent(user, needs, start_at, end_at, except_reservation)
    limit = quotas(user)["reservation_hours_week"]
    week = week_start(start_at)
    while week < end_at:
        week_end = week + timedelta(days=7)
        query = select(Reservation).where(
            Reservation.owner_id == user.id,
            Reservation.state.in_(COUNTED_STATES),
            Reservation.start_at < week_end,
            Reservation.end_at > week,
        )
        if except_reservation is not None:
            query = query.where(Reservation.id != except_reservation)
        in_use = sum(
            _hours_within(r.start_at, r.end_at, week, week_end) for r in db.session.scalars(query)
        )
        asked = _hours_within(start_at, end_at, week, week_end)
        if in_use + asked > limit:
            raise QuotaExceeded(
                "reservation hours per week",
                limit,
                round(in_use, 2),
                round(asked, 2),
                f"in the week of {week.date().isoformat()}",
            )
        week = week_end
