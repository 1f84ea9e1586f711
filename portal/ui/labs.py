"""The lab page: the lab's picture and nodes with their state, its current task's progress
live (lab.js follows /api/jobs/<id>/stream, polling /api/jobs/<id>/events if the stream
fails), per node its management address, an SSH one-liner to copy and its device
information on request; snapshot, restore, capture and remove, each refusal shown next to
the button that asked.

The rules are portal/labs.py's, like the API's; every route reaches the lab through
portal.access.lab_or_404, so another user's lab is the 404 page.
"""

from __future__ import annotations

import hashlib
from typing import Any

from apiflask import HTTPError
from flask import render_template, request, url_for
from sqlalchemy import select

from ltb.snapshot import list_snapshots
from ltb.ssh import ssh_argv
from portal import labs as rules
from portal.access import lab_or_404
from portal.auth import current_user
from portal.keys import ssh_one_liner
from portal.ui import bp, page_login_required
from portal.ui.templates import go_to, is_htmx, message_fragment
from store.db import db
from store.models import ACTIVE_JOB_STATUSES, Job, JobEvent, Lab, LabState

# Events of an ended task shown on the page (the newest ones).
SHOWN_EVENTS = 100
# The lab page lists its jobs a page at a time (?page=&per_page=), latest first.
JOBS_PER_PAGE, MAX_JOBS_PER_PAGE = 10, 100
# What an ansible-runner event means, in words.
EVENT_WORDS = {
    "playbook_on_start": "playbook started",
    "playbook_on_play_start": "play",
    "playbook_on_task_start": "task",
    "runner_on_start": "started",
    "runner_on_ok": "ok",
    "runner_on_changed": "changed",
    "runner_on_failed": "failed",
    "runner_on_unreachable": "unreachable",
    "runner_on_skipped": "skipped",
    "playbook_on_stats": "summary",
}


def event_words(event: str) -> str:
    return EVENT_WORDS.get(event, event.replace("_", " "))


def ssh_command(mgmt_ipv4: str) -> str:
    """The one-liner that reaches a node from the host (as portal.labs.node_info says it)."""
    return " ".join(ssh_argv(mgmt_ipv4.split("/")[0], key=rules.PLATFORM_SSH_KEY))


def capture_endpoints(lab: Lab) -> list[str]:
    """NODE:INTERFACE of every interface on a link: what a capture may name."""
    return [
        f"{node.name}:{interface.name}"
        for node in lab.nodes
        for interface in node.interfaces
        if interface.connection_id is not None
    ]


def recent_events(job: Job) -> list[JobEvent]:
    events = db.session.scalars(
        select(JobEvent)
        .where(JobEvent.job_id == job.id)
        .order_by(JobEvent.seq.desc())
        .limit(SHOWN_EVENTS)
    ).all()
    return list(reversed(events))


def snapshots_of(lab: Lab) -> list[dict[str, Any]]:
    try:
        return list_snapshots(lab.name)
    except (OSError, ValueError):  # an unreadable snapshot directory lists nothing
        return []


def picture_version(states: dict[str, str]) -> str:
    """A short digest of the nodes' states: the picture's URL changes when they do, so the
    browser fetches it again then (and only then)."""
    text = ",".join(f"{name}={state}" for name, state in sorted(states.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _number_arg(name: str, default: int, largest: int) -> int:
    """A page number or size from the query string; a missing or wrong one is the default
    (the page is a view: a bad number shows the first page, not an error)."""
    value = request.args.get(name, "")
    return min(int(value), largest) if value.isdigit() and int(value) >= 1 else default


def lab_page(lab: Lab, action_errors: dict[str, str] | None = None, status: int = 200):
    job = rules.current_job(lab)
    jobs_page = _number_arg("page", 1, 1_000_000)
    per_page = _number_arg("per_page", JOBS_PER_PAGE, MAX_JOBS_PER_PAGE)
    jobs, jobs_total = rules.lab_jobs(lab, jobs_page, per_page)
    active = job is not None and job.status in ACTIVE_JOB_STATUSES
    states = rules.node_states(lab)
    page = render_template(
        "lab.html",
        lab=lab,
        node_states=states,
        picture_version=picture_version(states),
        job=job,
        job_active=active,
        events=[] if job is None or active else recent_events(job),
        event_words=event_words,
        ssh_command=ssh_command,
        ssh_jump_command=ssh_one_liner,
        endpoints=capture_endpoints(lab),
        snapshots=snapshots_of(lab),
        running=lab.state == LabState.RUNNING.value,
        removed=lab.state == LabState.REMOVED.value,
        action_errors=action_errors or {},
        jobs=jobs,
        jobs_page=jobs_page,
        jobs_pages=max(1, -(-jobs_total // per_page)),
        jobs_per_page=per_page,
    )
    return page, status


@bp.get("/labs/<int:lab_id>")
@page_login_required()
def lab(lab_id: int):
    return lab_page(lab_or_404(current_user(), lab_id))


@bp.get("/labs/<int:lab_id>/node-states")
@page_login_required()
def lab_node_states(lab_id: int):
    """The nodes' states and the picture, as htmx out-of-band swaps into the lab page (which
    polls this while it is open)."""
    lab = lab_or_404(current_user(), lab_id)
    states = rules.node_states(lab)
    return render_template(
        "lab_node_states.html", lab=lab, node_states=states, picture_version=picture_version(states)
    )


@bp.get("/labs/<int:lab_id>/nodes/<name>/info")
@page_login_required()
def node_info(lab_id: int, name: str):
    """A node's device information, as a fragment of the lab page (htmx) or a page."""
    lab = lab_or_404(current_user(), lab_id)
    info = rules.node_info(lab, name)
    template = "lab_node_info.html" if is_htmx() else "lab_node.html"
    return render_template(template, lab=lab, info=info)


def acted(lab: Lab, action: str, do) -> Any:
    """Run a task request of the lab page: on success back to the lab page (its progress
    shows the new task); a refusal shown next to the button that asked."""
    try:
        do()
    except HTTPError as error:
        db.session.rollback()
        if is_htmx():
            return message_fragment(error.message)
        return lab_page(lab, {action: error.message}, error.status_code)
    return go_to(url_for("ui.lab", lab_id=lab.id))


@bp.post("/labs/<int:lab_id>/snapshot")
@page_login_required()
def snapshot_lab(lab_id: int):
    lab = lab_or_404(current_user(), lab_id)
    params = {"name": request.form.get("name", "").strip()}
    return acted(lab, "snapshot", lambda: rules.request_lab_task(lab, "snapshot", params))


@bp.post("/labs/<int:lab_id>/restore")
@page_login_required()
def restore_lab(lab_id: int):
    lab = lab_or_404(current_user(), lab_id)
    params = {"name": request.form.get("name", "").strip()}
    return acted(lab, "restore", lambda: rules.request_lab_task(lab, "restore", params))


@bp.post("/labs/<int:lab_id>/remove")
@page_login_required()
def remove_lab(lab_id: int):
    lab = lab_or_404(current_user(), lab_id)
    return acted(lab, "remove", lambda: rules.remove_lab(lab))
