"""The dashboard: my running labs with their state, my reservations, my courses, my quotas."""

from __future__ import annotations

from flask import render_template

from portal.auth import current_user
from portal.labs import visible_labs
from portal.ui import bp, page_login_required
from portal.users import quotas_of


@bp.get("/")
@page_login_required()
def dashboard():
    user = current_user()
    labs, total = visible_labs(user, None, 1, 50)
    mine = [lab for lab in labs if lab.owner_id == user.id]
    return render_template("dashboard.html", labs=mine, total=total, quotas=quotas_of(user))
