"""The dashboard: my labs with their state, my reservations still to come or running, the
courses I take or teach, and how much of my quotas I use."""

from __future__ import annotations

from flask import render_template
from sqlalchemy import or_, select

from portal.access import taken_course_ids
from portal.auth import current_user
from portal.labs import visible_labs
from portal.ui import bp, page_login_required
from portal.users import quotas_of
from store.db import db
from store.models import Course, LabState, Reservation, ReservationState

# Labs that hold a share of the running-labs quota.
LIVE_STATES = (LabState.DEPLOYING, LabState.RUNNING, LabState.FAILED, LabState.REMOVING)


@bp.get("/")
@page_login_required()
def dashboard():
    user = current_user()
    labs, _ = visible_labs(user, None, 1, 50)
    mine = [lab for lab in labs if lab.owner_id == user.id]
    reservations = db.session.scalars(
        select(Reservation)
        .where(
            Reservation.owner_id == user.id,
            Reservation.state.in_([ReservationState.SCHEDULED, ReservationState.STARTED]),
        )
        .order_by(Reservation.start_at)
        .limit(20)
    ).all()
    courses = db.session.scalars(
        select(Course)
        .where(or_(Course.teacher_id == user.id, Course.id.in_(taken_course_ids(user))))
        .order_by(Course.start_at.desc().nulls_last())
        .limit(20)
    ).all()
    live = [lab for lab in mine if lab.state in LIVE_STATES]
    use = {
        "running_labs": len(live),
        "nodes": sum(len(lab.nodes) for lab in live),
    }
    return render_template(
        "dashboard.html",
        labs=mine,
        reservations=reservations,
        courses=courses,
        quotas=quotas_of(user),
        use=use,
    )
