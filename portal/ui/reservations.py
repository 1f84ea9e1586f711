"""Pages of reservations: a week calendar (UTC) of my bookings and the platform's free
capacity per hour, and forms to book, start now, move and cancel. The rules are the API's
(portal.reservations, portal.capacity, portal.quotas); a refusal is shown next to the form
the user sent, in the words of its HTTPError.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from apiflask import HTTPError
from flask import redirect, render_template, request, url_for
from sqlalchemy import select

from portal import capacity
from portal import reservations as rules
from portal.access import reservation_or_404
from portal.api.reservations import EARLIEST_YEAR, LATEST_YEAR, visible_reservations
from portal.auth import current_user
from portal.quotas import week_start
from portal.templates import visible_templates
from portal.ui import bp, page_login_required
from store.db import db
from store.models import Lab, Reservation, ReservationState, User, utcnow

GIB = 1024**3
HOUR = timedelta(hours=1)
# How a form shows a time: what <input type="datetime-local"> sends back (read as UTC).
FORM_TIME = "%Y-%m-%dT%H:%M"
# A slot is shaded by the share of the platform still free in it (the lower of CPUs and
# memory); the numbers are always written too, so colour is never the only signal.
SHADES = ((0.5, "free-high"), (0.2, "free-mid"))


def form_time(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime(FORM_TIME) if moment is not None else ""


def parse_time(field: str, label: str, value: str | None) -> datetime:
    """A time from a form: an ISO 8601 time, read as UTC when it has no zone (the pages show
    UTC). 422 naming the field when it is missing or not a time."""
    text = (value or "").strip()
    if not text:
        raise HTTPError(422, f"{label} is missing", {field: ["missing"]})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise HTTPError(
            422, f"{label} {text!r} is not a time like 2030-01-31T09:00", {field: ["not a time"]}
        ) from None
    if not EARLIEST_YEAR <= moment.year < LATEST_YEAR:
        raise HTTPError(
            422,
            f"{label} must be in the years {EARLIEST_YEAR} to {LATEST_YEAR - 1}",
            {field: ["out of range"]},
        )
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def parse_id(field: str, label: str, value: str | None, *, optional: bool = False) -> int | None:
    """A positive whole number from a form (an id, a version); 422 naming the field."""
    text = (value or "").strip()
    if not text and optional:
        return None
    if not text.isdigit() or int(text) < 1:
        raise HTTPError(422, f"{label} must be chosen", {field: ["missing"]})
    return int(text)


def chosen_week(value: str | None) -> datetime:
    """Monday 00:00 UTC of the week to show: the one holding the date `?week=` gives, else
    this week."""
    if not value:
        return week_start(utcnow())
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise HTTPError(422, f"week {value!r} is not a date like 2030-01-31") from None
    if not EARLIEST_YEAR <= day.year < LATEST_YEAR:
        raise HTTPError(422, f"week must be in the years {EARLIEST_YEAR} to {LATEST_YEAR - 1}")
    return week_start(datetime(day.year, day.month, day.day, tzinfo=UTC))


def shade(free_cpus: float, free_memory: int, total: dict[str, Any]) -> str:
    share = min(
        free_cpus / total["cpus"] if total["cpus"] else 0.0,
        free_memory / total["memory_bytes"] if total["memory_bytes"] else 0.0,
    )
    for lowest, name in SHADES:
        if share >= lowest:
            return name
    return "free-low" if share > 0 else "free-none"


def week_grid(user: User, monday: datetime) -> dict[str, Any]:
    """The week as rows of hours and columns of days; each cell has the free capacity of
    that hour and the user's bookings (theirs, their courses', all for an admin) in it."""
    end = monday + timedelta(days=7)
    free = capacity.calendar(monday, end, HOUR)
    total = free["capacity"]
    booked = list(
        db.session.scalars(
            visible_reservations(user)
            .where(
                Reservation.start_at < end,
                Reservation.end_at > monday,
                Reservation.state.in_(
                    [ReservationState.SCHEDULED.value, ReservationState.STARTED.value]
                ),
            )
            .order_by(Reservation.start_at, Reservation.id)
        )
    )
    days = [monday + timedelta(days=n) for n in range(7)]
    rows = []
    for hour in range(24):
        cells = []
        for day in days:
            start = day + timedelta(hours=hour)
            slot = free["slots"][(start - monday) // HOUR]
            cells.append(
                {
                    "start": start,
                    "free_cpus": slot["free_cpus"],
                    "free_gib": slot["free_memory_bytes"] / GIB,
                    # More fits spread over several hypervisors (None: not more).
                    "spread": (slot["spread_cpus"], slot["spread_memory_bytes"] / GIB)
                    if (slot["spread_cpus"], slot["spread_memory_bytes"])
                    > (slot["free_cpus"], slot["free_memory_bytes"])
                    else None,
                    # The share of the platform still free, its hypervisors together.
                    "shade": shade(slot["spread_cpus"], slot["spread_memory_bytes"], total),
                    "bookings": [
                        r for r in booked if r.start_at < start + HOUR and r.end_at > start
                    ],
                }
            )
        rows.append({"hour": hour, "cells": cells})
    return {
        "monday": monday,
        "days": days,
        "rows": rows,
        "total_cpus": total["cpus"],
        "total_gib": total["memory_bytes"] / GIB,
        "previous": (monday - timedelta(days=7)).date().isoformat(),
        "next": end.date().isoformat(),
        "this_week": week_start(utcnow()).date().isoformat(),
    }


def my_reservations(user: User) -> list[Reservation]:
    """The user's bookings (and their courses', all for an admin) still to end, soonest
    first."""
    return list(
        db.session.scalars(
            visible_reservations(user)
            .where(
                Reservation.state.in_(
                    [ReservationState.SCHEDULED.value, ReservationState.STARTED.value]
                )
            )
            .order_by(Reservation.start_at, Reservation.id)
            .limit(100)
        )
    )


def templates_for(user: User) -> list:
    return list(db.session.scalars(visible_templates(user)))


def lab_of(reservation: Reservation) -> Lab | None:
    return db.session.scalars(select(Lab).where(Lab.name == reservation.lab_name)).first()


def _calendar_page(error: HTTPError | None = None, form: dict | None = None, status: int = 200):
    user = current_user()
    monday = chosen_week(request.values.get("week"))
    page = render_template(
        "reservations.html",
        grid=week_grid(user, monday),
        reservations=my_reservations(user),
        templates=templates_for(user),
        form=form or {},
        error=error,
        now=utcnow(),
    )
    return page, status


@bp.get("/reservations")
@page_login_required()
def reservations():
    return _calendar_page()


@bp.post("/reservations")
@page_login_required()
def reservation_book():
    """Book a template for a time, or ("start now") from now to the end given."""
    user = current_user()
    form = request.form.to_dict()
    start_now = "start_now" in request.form
    try:
        template_id = parse_id("template_id", "Template", form.get("template_id"))
        number = parse_id("version", "Version", form.get("version"), optional=True)
        start = utcnow() if start_now else parse_time("start_at", "Start", form.get("start_at"))
        end = parse_time("end_at", "End", form.get("end_at"))
        version = rules.template_version(user, template_id, number)
        reservation = rules.book(user, version, rules.Slot(start, end))
        db.session.commit()
    except HTTPError as error:
        db.session.rollback()
        return _calendar_page(error, form, error.status_code)
    rules.schedule([reservation])
    return redirect(url_for("ui.reservation", reservation_id=reservation.id))


def _reservation_page(reservation: Reservation, error: HTTPError | None = None, status=200):
    page = render_template(
        "reservation.html",
        reservation=reservation,
        lab=lab_of(reservation),
        owner=db.session.get(User, reservation.owner_id) if reservation.owner_id else None,
        movable=reservation.state
        in (ReservationState.SCHEDULED.value, ReservationState.STARTED.value),
        started=reservation.state == ReservationState.STARTED.value,
        form_time=form_time,
        error=error,
    )
    return page, status


@bp.get("/reservations/<int:reservation_id>")
@page_login_required()
def reservation(reservation_id: int):
    return _reservation_page(reservation_or_404(current_user(), reservation_id))


def _unchanged_or(field: str, label: str, current: datetime) -> datetime:
    """The form's time, or the reservation's own when the form shows it unchanged (a form
    shows minutes; the reservation may hold seconds)."""
    value = request.form.get(field, "")
    if not value.strip() or value.strip() == form_time(current):
        return current
    return parse_time(field, label, value)


@bp.post("/reservations/<int:reservation_id>/move")
@page_login_required()
def reservation_move(reservation_id: int):
    user = current_user()
    reservation = reservation_or_404(user, reservation_id)
    try:
        slot = rules.Slot(
            _unchanged_or("start_at", "Start", reservation.start_at),
            _unchanged_or("end_at", "End", reservation.end_at),
        )
        rules.move(user, reservation, slot)
    except HTTPError as error:
        db.session.rollback()
        return _reservation_page(reservation_or_404(user, reservation_id), error, error.status_code)
    return redirect(url_for("ui.reservation", reservation_id=reservation_id))


@bp.get("/reservations/<int:reservation_id>/cancel")
@page_login_required()
def reservation_cancel_confirm(reservation_id: int):
    reservation = reservation_or_404(current_user(), reservation_id)
    return render_template("reservation_cancel.html", reservation=reservation, error=None)


@bp.post("/reservations/<int:reservation_id>/cancel")
@page_login_required()
def reservation_cancel(reservation_id: int):
    user = current_user()
    reservation = reservation_or_404(user, reservation_id)
    try:
        rules.cancel(reservation)
    except HTTPError as error:
        db.session.rollback()
        return _reservation_page(reservation_or_404(user, reservation_id), error, error.status_code)
    return redirect(url_for("ui.reservation", reservation_id=reservation_id))
