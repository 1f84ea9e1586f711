"""Pages of admins: users and their quotas (list, create, disable or enable, reset the
password, set quotas), the labs of everyone that are not removed, failed jobs with their
events, and the hypervisors' capacity with what holds it now.

Only admins (Role.ADMIN) see them; others get the 403 page. User changes go through
portal.users like the API's (the same input schemas of portal.api.users check the forms), and
a refusal is shown next to the form that asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from apiflask import HTTPError
from flask import current_app, flash, redirect, render_template, request, url_for
from marshmallow import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from ltb.topology import TopologyError
from portal.api.users import QuotasIn, UserChangeIn, UserIn
from portal.auth import current_user
from portal.capacity import GIB, capacity
from portal.ui import bp, page_login_required
from portal.users import QUOTAS, default_quotas, find_users, update_user, user_or_404
from portal.users import create_user as create_user_rule
from store.capacity import (
    HOLDING_STATES,
    NOTHING,
    Capacity,
    Needs,
    bookings,
    draining_hypervisors,
    hypervisor_capacities,
    load_at,
    reservation_needs,
    spread_parts,
    topology_needs,
)
from store.db import db
from store.models import (
    Job,
    JobEvent,
    JobStatus,
    Lab,
    LabState,
    Reservation,
    ReservationState,
    Role,
    User,
    utcnow,
)

ADMIN = page_login_required(Role.ADMIN.value)
USERS_PER_PAGE = 50
LABS_PER_PAGE = 50
JOBS_PER_PAGE = 20
# Events of a failed job shown with it (its last ones: where it failed).
EVENTS_PER_JOB = 40
FAILED_STATUSES = (JobStatus.FAILED.value, JobStatus.TIMEOUT.value)
# Quotas in forms: memory in GiB (the store keeps bytes), the others as they are.
QUOTA_LABELS = {
    "running_labs": "Running labs",
    "nodes": "Nodes over all running labs",
    "memory_bytes": "Memory over all running labs (GiB)",
    "reservation_hours_week": "Reservation hours per week",
}


def page_number() -> int:
    """?page= of a list page: a bad or missing number is the first page."""
    try:
        return min(max(int(request.args.get("page", "1")), 1), 1_000_000)
    except ValueError:
        return 1


def paginate(statement, per_page: int):
    return db.paginate(statement, page=page_number(), per_page=per_page, error_out=False)


def field_errors(error: ValidationError | HTTPError, where: str = "") -> dict[str, str]:
    """Messages by form field, in words; a refusal that names no field is put at `where`
    (the part of the page that asked)."""
    if isinstance(error, ValidationError):
        found: dict[str, str] = {}
        for field, messages in error.normalized_messages().items():
            if isinstance(messages, dict):  # nested: quotas
                for name, inner in messages.items():
                    found[f"quota_{name}"] = " ".join(inner)
            else:
                found[field] = " ".join(messages)
        return found
    detail = error.detail if isinstance(error.detail, dict) else {}
    fields = [name for name in detail if isinstance(detail[name], list)]
    return {fields[0]: error.message} if fields else {where: error.message}


def quota_value(name: str, text: str) -> int | float | str | None:
    """A quota of a form: empty is the platform's default (None); memory is GiB."""
    text = text.strip()
    if not text:
        return None
    if name == "memory_bytes":
        try:
            return round(float(text) * GIB)
        except ValueError:
            return text  # the schema names it "Not a valid integer."
    return text


def quotas_of_form() -> dict[str, Any]:
    return {name: quota_value(name, request.form.get(f"quota_{name}", "")) for name in QUOTAS}


def quota_shown(name: str, value: int | None) -> str:
    if value is None:
        return ""
    return f"{value / GIB:g}" if name == "memory_bytes" else str(value)


# Users ----------------------------------------------------------------------------------------


def users_page(errors: dict[str, str] | None = None, form: dict[str, str] | None = None):
    query = request.args.get("q", "").strip()[:64]
    page = paginate(find_users(query or None), USERS_PER_PAGE)
    status = 422 if errors else 200
    return render_template(
        "admin_users.html",
        page=page,
        q=query,
        roles=[role.value for role in Role],
        errors=errors or {},
        form=form or {},
    ), status


@bp.get("/admin")
@ADMIN
def admin():
    return users_page()


@bp.post("/admin/users")
@ADMIN
def admin_create_user():
    form = {key: request.form.get(key, "") for key in ("username", "display_name", "role")}
    try:
        body = UserIn().load(
            {
                "username": form["username"].strip(),
                "password": request.form.get("password", ""),
                "role": form["role"] or Role.STUDENT.value,
                "display_name": form["display_name"].strip() or None,
            }
        )
        user = create_user_rule(
            body["username"], body["password"], body["role"], body["display_name"], None
        )
    except (ValidationError, HTTPError) as error:
        db.session.rollback()
        return users_page(field_errors(error), form)
    flash(f"User {user.username} created ({user.role}).")
    return redirect(url_for("ui.admin_user", user_id=user.id))


def user_page(user: User, errors: dict[str, str] | None = None, status: int = 200):
    shown = {name: quota_shown(name, getattr(user, f"quota_{name}")) for name in QUOTAS}
    defaults = {name: quota_shown(name, value) for name, value in default_quotas().items()}
    return render_template(
        "admin_user.html",
        account=user,
        quotas=shown,
        defaults=defaults,
        labels=QUOTA_LABELS,
        errors=errors or {},
    ), status


@bp.get("/admin/users/<int:user_id>")
@ADMIN
def admin_user(user_id: int):
    return user_page(user_or_404(user_id))


def change_user(user: User, changes: dict[str, Any], done: str, where: str):
    """Apply an admin's change with the API's schema and rule; the page shows the outcome."""
    try:
        update_user(current_user(), user, UserChangeIn().load(changes))
    except (ValidationError, HTTPError) as error:
        db.session.rollback()
        status = error.status_code if isinstance(error, HTTPError) else 422
        return user_page(user_or_404(user.id), field_errors(error, where), status)
    flash(done)
    return redirect(url_for("ui.admin_user", user_id=user.id))


@bp.post("/admin/users/<int:user_id>/disabled")
@ADMIN
def admin_user_disabled(user_id: int):
    user = user_or_404(user_id)
    disable = request.form.get("disabled") == "true"
    done = f"User {user.username} {'disabled' if disable else 'enabled'}."
    return change_user(user, {"disabled": disable}, done, "disabled")


@bp.post("/admin/users/<int:user_id>/password")
@ADMIN
def admin_user_password(user_id: int):
    user = user_or_404(user_id)
    password = request.form.get("password", "")
    done = f"Password of {user.username} reset; their sessions have ended."
    return change_user(user, {"password": password}, done, "password")


@bp.post("/admin/users/<int:user_id>/quotas")
@ADMIN
def admin_user_quotas(user_id: int):
    user = user_or_404(user_id)
    try:
        quotas = QuotasIn().load(quotas_of_form())
    except ValidationError as error:
        return user_page(user, field_errors(ValidationError({"quotas": error.messages})), 422)
    return change_user(user, {"quotas": quotas}, f"Quotas of {user.username} saved.", "quotas")


# Labs, jobs, hypervisors ----------------------------------------------------------------------


@bp.get("/admin/labs")
@ADMIN
def admin_labs():
    statement = (
        select(Lab, User.username)
        .outerjoin(User, Lab.owner_id == User.id)
        .where(Lab.state != LabState.REMOVED.value)
        .options(selectinload(Lab.nodes))
        .order_by(Lab.created_at.desc(), Lab.id.desc())
    )
    total = db.session.scalar(select(func.count()).select_from(statement.subquery()))
    page = page_number()
    rows = db.session.execute(
        statement.offset((page - 1) * LABS_PER_PAGE).limit(LABS_PER_PAGE)
    ).all()
    pages = max(1, -(-(total or 0) // LABS_PER_PAGE))
    return render_template("admin_labs.html", rows=rows, total=total, page=page, pages=pages)


def event_message(event: JobEvent) -> str:
    """What an event says went wrong (or did), in one line."""
    result = (event.data or {}).get("res") or {}
    if not isinstance(result, dict):
        return str(result)
    for key in ("msg", "stderr", "reason", "truncated"):
        if result.get(key):
            return str(result[key])
    return ""


@bp.get("/admin/jobs")
@ADMIN
def admin_jobs():
    statement = (
        select(Job)
        .where(Job.status.in_(FAILED_STATUSES))
        .options(selectinload(Job.lab))
        .order_by(Job.ended_at.desc().nulls_last(), Job.enqueued_at.desc())
    )
    page = paginate(statement, JOBS_PER_PAGE)
    events = {
        job.id: list(
            reversed(
                db.session.scalars(
                    select(JobEvent)
                    .where(JobEvent.job_id == job.id)
                    .order_by(JobEvent.seq.desc())
                    .limit(EVENTS_PER_JOB)
                ).all()
            )
        )
        for job in page.items
    }
    return render_template("admin_jobs.html", page=page, events=events, event_message=event_message)


@dataclass
class HypervisorUse:
    """A hypervisor's capacity (None: not in the inventory) and what is placed on it now."""

    name: str
    capacity: Capacity | None
    labs: int = 0
    reservations: int = 0
    needs: Needs = NOTHING
    # `ltb_drain: true`: takes no new lab or booking; what runs or is booked there stays.
    draining: bool = False
    # Bookings placed on it that start later, and when the last of them ends: a draining
    # hypervisor is empty once its labs are removed and that time has passed.
    booked_later: int = 0
    booked_until: datetime | None = None

    def use(self) -> list[tuple[str, float | None]]:
        """CPUs and memory in use, each in words ("1.5 of 2 CPUs (75 %)") and as the part of
        the capacity held (0..1, more when over-committed; None without a capacity)."""
        shown = []
        for resource, unit, scale in (("cpus", "CPUs", 1), ("memory_bytes", "GiB", GIB)):
            used = getattr(self.needs, resource) / scale
            have = getattr(self.capacity, resource) / scale if self.capacity else None
            if not have:
                shown.append((f"{round(used, 2):g} {unit}", None))
                continue
            share = used / have
            shown.append((f"{round(used, 2):g} of {round(have, 2):g} {unit} ({share:.0%})", share))
        return shown


UNPLACED = "not placed yet"


def hypervisors_now(now) -> tuple[list[HypervisorUse], str | None]:
    """Each hypervisor of the inventory with the labs not removed that run on it (Lab.hypervisor)
    and what they hold: their reservation's CPUs and memory while one holds them, else their
    topology's; whether it drains, and the bookings placed on it for later. Reservations
    that hold now and have no lab yet count on their recorded hypervisor; those booked before
    reservations recorded one are one more row (UNPLACED): their lab goes to the job layer's
    hypervisor when it starts."""
    problem = None
    inventory = Path(current_app.config["LTB_HYPERVISORS"])
    try:
        capacities = hypervisor_capacities(inventory)
        draining = draining_hypervisors(inventory)
    except (OSError, ValueError, AttributeError, yaml.YAMLError) as error:
        capacities, draining = {}, frozenset()
        problem = f"The hypervisors' inventory cannot be read: {error}"
    hosts = {
        name: HypervisorUse(name, capacity, draining=name in draining)
        for name, capacity in capacities.items()
    }
    later = db.session.scalars(
        select(Reservation).where(
            Reservation.state == ReservationState.SCHEDULED.value,
            Reservation.start_at > now,
            Reservation.hypervisor.is_not(None),
        )
    )
    for reservation in later:
        # A spread booking is booked on each of its hypervisors.
        for where in dict.fromkeys(
            [reservation.hypervisor, *(reservation.placement or {}).values()]
        ):
            host = hosts.setdefault(where, HypervisorUse(where, None))
            host.booked_later += 1
            host.booked_until = max(host.booked_until or reservation.end_at, reservation.end_at)
    holding = {
        r.lab_name: r
        for r in db.session.scalars(
            select(Reservation).where(
                Reservation.state.in_(HOLDING_STATES),
                Reservation.start_at <= now,
                Reservation.end_at > now,
            )
        )
    }
    labs = db.session.execute(
        select(Lab.name, Lab.hypervisor, Lab.topology, Lab.placement).where(
            Lab.state != LabState.REMOVED.value
        )
    ).all()
    for name, hypervisor, topology, placement in labs:
        reservation = holding.pop(name, None)
        try:
            needs = reservation_needs(reservation) if reservation else topology_needs(topology)
        except TopologyError:
            needs = NOTHING  # a lab of the command line whose topology no longer parses
        # A spread lab counts on each of its hypervisors with its nodes there.
        for where, part in spread_parts(topology, hypervisor, placement) or ((hypervisor, needs),):
            host = hosts.setdefault(where, HypervisorUse(where, None))
            host.labs += 1
            host.reservations += reservation is not None
            host.needs += part
    for reservation in holding.values():
        where = reservation.hypervisor or UNPLACED
        host = hosts.setdefault(where, HypervisorUse(where, None))
        host.reservations += 1
        host.needs += reservation_needs(reservation)
    return list(hosts.values()), problem


@bp.get("/admin/hypervisors")
@ADMIN
def admin_hypervisors():
    now = utcnow()
    problem, total = None, None
    try:
        total = capacity()
    except (OSError, ValueError, AttributeError, yaml.YAMLError) as error:
        problem = f"The hypervisors' inventory cannot be read: {error}"
    held = bookings(db.session, now, now + timedelta(seconds=1), now=now)
    used, count = load_at(now, held)
    holding = [b for b in held if b.start_at <= now]
    owner_ids = {b.owner_id for b in holding if b.owner_id is not None}
    owners = dict(
        db.session.execute(select(User.id, User.username).where(User.id.in_(owner_ids))).all()
    )
    hosts, _ = hypervisors_now(now)
    return render_template(
        "admin_hypervisors.html",
        total=total,
        problem=problem,
        used=used,
        count=count,
        holding=holding,
        owners=owners,
        hosts=hosts,
        gib=GIB,
        now=now,
    )
