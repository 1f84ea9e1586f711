"""Resource pages: the hypervisors' CPU, memory and disk over the last hours (admins) and a
lab's nodes now and over the last minutes (whoever may see the lab), as SVG plots drawn on
the server (portal.plots) with the numbers beside them. The numbers come from Prometheus
(portal.usage); when it does not answer, the page says so instead of the plots.
"""

from __future__ import annotations

from flask import render_template, request

from portal import plots, usage
from portal.access import lab_or_404
from portal.auth import current_user
from portal.ui import bp, page_login_required
from store.models import Role

HOURS = (1, 6, 24, 24 * 7)


@bp.get("/usage")
@page_login_required(Role.ADMIN)
def usage_page():
    hours = request.args.get("hours", type=int, default=6)
    hours = hours if hours in HOURS else 6
    try:
        hypervisors, problem = usage.hypervisor_usage(hours), None
    except usage.MetricsUnavailable as error:
        hypervisors, problem = [], error.message
    return render_template(
        "usage.html", hypervisors=hypervisors, problem=problem, hours=hours, choices=HOURS,
        plots=plots,
    )  # fmt: skip


@bp.get("/labs/<int:lab_id>/usage")
@page_login_required()
def lab_usage_page(lab_id: int):
    lab = lab_or_404(current_user(), lab_id)
    try:
        nodes, problem = usage.lab_usage(lab), None
    except usage.MetricsUnavailable as error:
        nodes, problem = [], error.message
    return render_template(
        "lab_usage.html", lab=lab, nodes=nodes, problem=problem, minutes=usage.LAB_MINUTES,
        plots=plots,
    )  # fmt: skip
