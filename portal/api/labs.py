"""The API of labs: start one from a template, list and describe them, request their tasks,
follow their jobs (polling or server-sent events), read a node's device information and
capture a link. The rules are in portal/labs.py and portal/events.py.

Every object is reached through a lab the caller may see (portal.access.lab_or_404): a job,
its events, a node or a capture of another user's lab is 404, like a lab that does not exist.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from apiflask import APIBlueprint, Schema
from apiflask.fields import Boolean, Dict, Integer, List, Nested, String
from apiflask.validators import Length, OneOf, Range
from flask import Response, current_app, request
from sqlalchemy.orm import Session

from portal import labs as rules
from portal.access import lab_or_404, may_see_lab, not_found
from portal.api.paging import PageOut, PageQuery
from portal.api.templates import svg_response
from portal.auth import current_user, login_required
from portal.events import (
    HEARTBEAT_SECONDS,
    MAX_STREAM_SECONDS,
    event_out,
    events_after,
    job_stream,
)
from store.db import db
from store.models import Job, LabState

bp = APIBlueprint("labs", __name__, url_prefix="/api")


class LabStartIn(Schema):
    template_id = Integer(required=True)
    version = Integer(load_default=None, validate=Range(min=1))
    title = String(load_default=None, validate=Length(max=128))


class LabListQuery(PageQuery):
    state = String(load_default=None, validate=OneOf([s.value for s in LabState]))
    details = Boolean(
        load_default=False,
        metadata={
            "description": "with each lab's nodes and links, as GET /api/labs/{lab_id} "
            "has them (slower: read them on the lab's own page)"
        },
    )


class JobListQuery(PageQuery):
    pass


class LabTaskIn(Schema):
    params = Dict(keys=String(), values=String(), load_default=dict)


class JobEventsQuery(Schema):
    after = Integer(load_default=0, validate=Range(min=0))


class CaptureQuery(Schema):
    endpoint = String(required=True, validate=Length(min=3, max=64))
    scope = String(load_default="link", validate=OneOf(["link", "interface"]))
    seconds = Integer(load_default=5, validate=Range(min=1, max=rules.CAPTURE_MAX_SECONDS))
    packets = Integer(load_default=1000, validate=Range(min=1, max=rules.CAPTURE_MAX_PACKETS))
    bytes = Integer(
        load_default=rules.CAPTURE_MAX_BYTES, validate=Range(min=1, max=rules.CAPTURE_MAX_BYTES)
    )


class JobOut(Schema):
    id = String()
    lab_id = Integer()
    task = String()
    params = Dict()
    status = String()
    enqueued_at = String()
    started_at = String(allow_none=True)
    ended_at = String(allow_none=True)
    progress = Dict()
    result = Dict()


NODE_STATE = String(
    metadata={
        "description": "the node's state now on its hypervisor: running, starting, unhealthy, "
        "paused, restarting, stopping, stopped, missing (no container or VM) or unknown"
    }
)


class NodeOut(Schema):
    name = String()
    kind = String()
    image = String(allow_none=True)
    mgmt_ipv4 = String()
    state = NODE_STATE
    interfaces = List(Dict())


LIST_DETAILS = "always in a lab's own answer; in GET /api/labs only with details=true"


class LabOut(Schema):
    id = Integer()
    name = String()
    title = String(allow_none=True)
    state = String()
    owner_id = Integer(allow_none=True)
    template_version_id = Integer(allow_none=True)
    course_id = Integer(allow_none=True)
    created_at = String()
    updated_at = String()
    nodes = List(Nested(NodeOut), metadata={"description": LIST_DETAILS})
    links = List(Dict(), metadata={"description": LIST_DETAILS})
    job = Nested(JobOut, allow_none=True)


class NodeInfoOut(Schema):
    name = String()
    kind = String()
    image = String(allow_none=True)
    mgmt_ipv4 = String()
    ssh = String(metadata={"description": "the command that reaches the node from the host"})
    ssh_bastion = String(
        metadata={"description": "the command that reaches the node through the bastion"}
    )
    groups = List(String())
    startup_files = List(String())
    interfaces = List(Dict())
    state = NODE_STATE
    live = Dict(
        metadata={
            "description": "read from the node now: reachable, error, os_release, "
            "frr_running, frr_version, running_config, addresses, routes, truncated"
        }
    )


class LabStartOut(Schema):
    lab = Nested(LabOut)
    job = Nested(JobOut)


class LabPageOut(PageOut):
    items = List(Nested(LabOut))


class JobPageOut(PageOut):
    items = List(Nested(JobOut))


class JobEventsOut(Schema):
    job = Nested(JobOut)
    events = List(Dict())
    next_after = Integer()


def _time(value):
    return value.isoformat() if value is not None else None


def job_out(job: Job | None) -> dict | None:
    if job is None:
        return None
    return {
        "id": job.id,
        "lab_id": job.lab_id,
        "task": job.task,
        "params": job.params,
        "status": job.status,
        "enqueued_at": _time(job.enqueued_at),
        "started_at": _time(job.started_at),
        "ended_at": _time(job.ended_at),
        "progress": job.progress,
        "result": job.result,
    }


def lab_out(lab, details: bool = True) -> dict:
    """A lab as LabOut gives it; without `details`, with no nodes and links (the list)."""
    summary = {
        "id": lab.id,
        "name": lab.name,
        "title": lab.title,
        "state": lab.state,
        "owner_id": lab.owner_id,
        "template_version_id": lab.template_version_id,
        "course_id": lab.course_id,
        "created_at": _time(lab.created_at),
        "updated_at": _time(lab.updated_at),
        "job": job_out(rules.current_job(lab)),
    }
    if not details:
        return summary
    states = rules.node_states(lab)
    return summary | {
        "nodes": [
            {
                "name": node.name,
                "kind": node.kind,
                "image": node.image,
                "mgmt_ipv4": node.mgmt_ipv4,
                "state": states[node.name],
                "interfaces": [
                    {"name": i.name, "ipv4": i.ipv4, "ipv6": i.ipv6, "link": i.connection_id}
                    for i in node.interfaces
                ],
            }
            for node in lab.nodes
        ],
        "links": [{"id": c.id, "vlan": c.vlan, "name": c.name} for c in lab.connections],
    }


def polled_answer(schema: type[Schema], data: dict) -> Response:
    """The JSON answer of a GET that clients poll (a lab's page, the lab list), made here
    rather than by marshmallow (which took a third of the list's time, bench/portal.py),
    with an ETag: a client that sends it back in If-None-Match gets a 304 with no body
    while nothing changed. The view has checked the caller before this, as always.

    `data` must be exactly what `schema` gives, or the OpenAPI document would lie: under
    TESTING (every test of the portal) it is dumped through the schema and compared."""
    if current_app.testing and schema().dump(data) != data:
        raise AssertionError(f"{schema.__name__} would answer otherwise than {data!r}")
    response = current_app.json.response(data)
    # Per user (the same URL lists other labs for another caller): never a shared cache.
    response.headers["Cache-Control"] = "private, no-cache"
    response.vary.update(("Authorization", "Cookie"))
    response.add_etag()
    return response.make_conditional(request)


def reads_in_autocommit(view: Callable[..., Any]) -> Callable[..., Any]:
    """The request reads with its connection in autocommit: no BEGIN before its first
    statement and no ROLLBACK after its last, two of a polled answer's five round trips to
    PostgreSQL (bench/portal.py). Only for views that read, each of whose statements is
    consistent by itself; a write (a token's last use) is then committed as it is made.
    Outermost of the view's checks, so the caller's token is read that way too."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        db.session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        return view(*args, **kwargs)

    return wrapper


def job_or_404(job_id: str) -> Job:
    """A job of a lab the caller may see; 404 otherwise (also for another user's job)."""
    job = db.session.get(Job, job_id)
    if job is None:
        raise not_found("job")
    if not may_see_lab(current_user(), job.lab):
        raise not_found("job")
    return job


@bp.post("/labs")
@login_required()
@bp.input(LabStartIn, arg_name="body")
@bp.output(LabStartOut, status_code=202)
def start_lab(body):
    """Start a lab from a template version: create it and queue its deploy."""
    job = rules.start_lab(current_user(), body["template_id"], body["version"], body["title"])
    return {"lab": lab_out(job.lab), "job": job_out(job)}


@bp.get("/labs")
@reads_in_autocommit
@login_required()
@bp.input(LabListQuery, location="query", arg_name="query")
@bp.output(LabPageOut)
def list_labs(query):
    """The labs the caller may see, newest first."""
    labs, total = rules.visible_labs(
        current_user(),
        query["state"],
        query["page"],
        query["per_page"],
        with_nodes=query["details"],
    )
    page = {
        "items": [lab_out(lab, query["details"]) for lab in labs],
        "page": query["page"],
        "per_page": query["per_page"],
        "total": total,
    }
    return polled_answer(LabPageOut, page)


@bp.get("/labs/<int:lab_id>")
@reads_in_autocommit
@login_required()
@bp.output(LabOut)
def show_lab(lab_id: int):
    """A lab: its nodes, links, state and current job with its progress."""
    return polled_answer(LabOut, lab_out(rules.lab_with_details(current_user(), lab_id)))


@bp.get("/labs/<int:lab_id>/jobs")
@login_required()
@bp.input(JobListQuery, location="query", arg_name="query")
@bp.output(JobPageOut)
def list_lab_jobs(lab_id: int, query):
    """The lab's jobs, latest first, one page at a time."""
    lab = lab_or_404(current_user(), lab_id)
    jobs, total = rules.lab_jobs(lab, query["page"], query["per_page"])
    return {
        "items": [job_out(job) for job in jobs],
        "page": query["page"],
        "per_page": query["per_page"],
        "total": total,
    }


@bp.delete("/labs/<int:lab_id>")
@login_required()
@bp.output(JobOut, status_code=202)
def remove_lab(lab_id: int):
    """Remove the lab: queue its remove job."""
    return job_out(rules.remove_lab(lab_or_404(current_user(), lab_id)))


@bp.post("/labs/<int:lab_id>/tasks/<task>")
@login_required()
@bp.input(LabTaskIn, arg_name="body")
@bp.output(JobOut, status_code=202)
def request_task(lab_id: int, task: str, body):
    """Queue a task of the lab (snapshot, restore, mirror) with its parameters."""
    lab = lab_or_404(current_user(), lab_id)
    return job_out(rules.request_lab_task(lab, task, body["params"]))


@bp.get("/labs/<int:lab_id>/picture.svg")
@login_required()
@bp.output({}, content_type="image/svg+xml", description="The topology picture (Graphviz SVG)")
@bp.doc(
    summary="Picture of a lab's topology, with its management addresses",
    responses={404: "No such lab"},
)
def lab_picture(lab_id: int):
    return svg_response(rules.lab_picture(lab_or_404(current_user(), lab_id)))


@bp.get("/labs/<int:lab_id>/nodes/<name>")
@login_required()
@bp.output(NodeInfoOut)
def show_node(lab_id: int, name: str):
    """A node's device information: from the topology, and read live from the node."""
    return rules.node_info(lab_or_404(current_user(), lab_id), name)


@bp.get("/labs/<int:lab_id>/capture")
@login_required()
@bp.input(CaptureQuery, location="query", arg_name="query")
@bp.doc(responses={200: {"description": "a pcap stream (application/vnd.tcpdump.pcap)"}})
def capture(lab_id: int, query):
    """Capture a link (or one interface) of the running lab, as a bounded pcap download."""
    lab = lab_or_404(current_user(), lab_id)
    stream = rules.capture_pcap(
        lab, query["endpoint"], query["scope"], query["seconds"], query["packets"], query["bytes"]
    )
    filename = f"{lab.name}-{query['endpoint'].replace(':', '-')}.pcap"
    return Response(
        stream,
        mimetype="application/vnd.tcpdump.pcap",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "X-Accel-Buffering": "no",
            "Cache-Control": "no-store",
        },
    )


@bp.get("/jobs/<job_id>")
@login_required()
@bp.output(JobOut)
def show_job(job_id: str):
    return job_out(job_or_404(job_id))


@bp.get("/jobs/<job_id>/events")
@login_required()
@bp.input(JobEventsQuery, location="query", arg_name="query")
@bp.output(JobEventsOut)
def job_events(job_id: str, query):
    """The job's events after sequence number `after` (poll with the answer's next_after)."""
    job = job_or_404(job_id)
    events = events_after(db.session, job.id, query["after"])
    return {
        "job": job_out(job),
        "events": [event_out(e) for e in events],
        "next_after": events[-1].seq if events else query["after"],
    }


@bp.get("/jobs/<job_id>/stream")
@login_required()
@bp.doc(responses={200: {"description": "server-sent events (text/event-stream)"}})
def job_events_stream(job_id: str):
    """The job's events live as server-sent events (id: sequence number), resumed after
    Last-Event-ID, ending with an `end` event when the job ends."""
    job = job_or_404(job_id)
    try:
        after = max(0, int(request.headers.get("Last-Event-ID", "0") or 0))
    except ValueError:
        after = 0
    engine = db.engine
    stream = job_stream(
        lambda: Session(engine),
        job.id,
        after,
        heartbeat=current_app.config.get("LTB_SSE_HEARTBEAT", HEARTBEAT_SECONDS),
        max_seconds=current_app.config.get("LTB_SSE_MAX_SECONDS", MAX_STREAM_SECONDS),
    )
    db.session.close()  # the stream reads with sessions of its own; free this connection
    return Response(
        stream,
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
