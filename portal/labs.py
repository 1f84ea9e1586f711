"""The portal's rules for labs: start one from a template, request its tasks, describe it,
read a node's device information and capture a link; the views in portal/api/labs.py only
parse and render.

A lab a user starts gets a platform-unique name made from its template's name
(store.labs.unique_lab_name); what the user calls it is its title. Tasks go through
jobs.queue.submit, which records the job (refusing a busy lab or a lab in the wrong state)
before anything is queued.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

from apiflask import HTTPError
from flask import current_app, g
from sqlalchemy import case, func, select, true
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.orm import aliased, defer, joinedload, selectinload

from jobs.queue import submit
from ltb import capture, kinds, model
from ltb.deployed import DEFAULT_STATE_DIR
from ltb.device_info import (
    ContainerReader,
    RemoteContainerReader,
    SshReader,
    read_device_info,
)
from ltb.mirror import MirrorError
from ltb.node_state import DEFAULT_LIBVIRT_URI
from ltb.node_state import node_states as read_node_states
from ltb.picture import topology_svg
from ltb.ssh import ssh_argv
from ltb.topology import TopologyError, parse_lab
from portal.access import LARGEST_ID, is_admin, lab_or_404, may_see_lab, taught_course_ids
from portal.keys import ssh_one_liner
from portal.quotas import check_lab_start
from portal.templates import usable_version
from store import allocations
from store.capacity import hypervisor_vars
from store.db import db
from store.labs import (
    LabBusy,
    LabError,
    LabNotFound,
    LabStateError,
    placed_topology,
    renamed_topology,
)
from store.labs import unique_lab_name as new_lab_name
from store.models import ACTIVE_JOB_STATUSES, Job, Lab, LabState, Node, User
from store.tasks import TaskError, lab_task

# Tasks a user may request on a lab by name (deploy and remove have their own endpoints).
USER_TASKS = ("snapshot", "restore", "mirror")
PLATFORM_SSH_KEY = DEFAULT_STATE_DIR / "ssh" / "id_ed25519"
# Bounds of a capture over the API: short, small downloads.
CAPTURE_MAX_SECONDS = 60
CAPTURE_MAX_PACKETS = 100_000
CAPTURE_MAX_BYTES = 64 * 1024**2

log = logging.getLogger(__name__)


def _submit(lab: Lab | str, task: str, **fields: Any) -> str:
    """Submit a task; store errors become the API's answers (409 busy or wrong state,
    422 bad parameters). Nothing is queued when it refuses."""
    name = lab if isinstance(lab, str) else lab.name
    try:
        return submit(name, task, **fields)
    except LabBusy as error:
        raise HTTPError(409, str(error), {"job": error.job_id, "task": error.task}) from None
    except (LabStateError, LabNotFound) as error:
        raise HTTPError(409, str(error)) from None
    except LabError as error:
        raise HTTPError(422, str(error), {"params": str(error)}) from None


def start_lab(user: User, template_id: int, version: int | None, title: str | None) -> Job:
    """Create a lab of the user from a template version (the newest if `version` is None)
    and submit its deploy; return the deploy job."""
    chosen = usable_version(user, template_id, version)
    template = chosen.template
    name = new_lab_name(db.session, template.name)
    topology = renamed_topology(chosen.topology, name)
    try:
        lab_model = parse_lab(topology, f"template {template.name} v{chosen.number}")
    except TopologyError as error:
        raise HTTPError(
            422,
            f"template {template.name} version {chosen.number} is not a valid lab",
            {"problems": [{"place": p.place, "message": p.message} for p in error.problems]},
        ) from None
    # The user's quotas of running labs, nodes and memory (409 naming the quota), and the
    # hypervisor with room for it.
    placed = check_lab_start(user, lab_model)
    job_id = _submit(
        name,
        "deploy",
        topology=topology,
        hypervisor=placed.hypervisor,  # recorded before the job is queued: the deploy runs there
        placement=placed.nodes,  # a spread lab's nodes, each where it was placed
        owner=user.username,
        owner_id=user.id,
        template_version_id=chosen.id,
        course_id=template.course_id,
        title=title or template.name,
        # A given subnet that another lab holds: named only if the user may see that lab.
        may_see=lambda holder: may_see_lab(user, holder),
    )
    db.session.expire_all()  # submit wrote in its own transaction
    return db.session.get(Job, job_id)


def request_lab_task(lab: Lab, task: str, params: dict[str, Any]) -> Job:
    """Submit a user task (snapshot, restore, mirror) with its parameters."""
    if task not in USER_TASKS:
        raise HTTPError(
            422,
            f"unknown task {task!r}: use one of {', '.join(USER_TASKS)}",
            {"task": task},
        )
    try:
        lab_task(task).check_params(params)
    except TaskError as error:
        raise HTTPError(422, str(error), {"params": str(error)}) from None
    job_id = _submit(lab, task, params=params)
    db.session.expire_all()
    return db.session.get(Job, job_id)


def remove_lab(lab: Lab) -> Job:
    job_id = _submit(lab, "remove")
    db.session.expire_all()
    return db.session.get(Job, job_id)


# What a lab's description shows, loaded for a whole page in one query per relationship
# (not one per lab and per node: bench/portal.py measured 124 queries for 20 labs). Its
# jobs are not: a lab may have thousands; current_jobs reads one per lab.
LAB_DETAILS = (
    selectinload(Lab.nodes).selectinload(Node.interfaces),
    selectinload(Lab.connections),
)


def visible_labs(
    user: User, state: str | None, page: int, per_page: int, *, with_nodes: bool = True
) -> tuple[list[Lab], int]:
    """The labs the user may see (portal.access.may_see_lab), newest first, one page; with
    their nodes, interfaces and links unless `with_nodes` is false (the API's list: a lab's
    own page has them, and a page of labs without them costs a third)."""
    query = select(Lab)
    if not is_admin(user):
        taught = taught_course_ids(user)
        seen = Lab.owner_id == user.id
        query = query.where(seen | Lab.course_id.in_(taught) if taught else seen)
    if state is not None:
        query = query.where(Lab.state == state)
    order = (Lab.created_at.desc(), Lab.id.desc())
    # The page with the number of all rows (a window count, taken before the LIMIT), then
    # each of its labs' current job (a LATERAL join on the page's rows only): one query for
    # every poll of the list, where three were one round trip each.
    page_rows = (
        query.with_only_columns(Lab.id, Lab.created_at, func.count().over().label("total"))
        .order_by(*order)
        .offset((page - 1) * per_page)
        .limit(per_page)
        .subquery("page")
    )
    job, current = current_job_lateral(page_rows.c.id)
    rows = db.session.execute(
        select(Lab, job, page_rows.c.total)
        .join(page_rows, Lab.id == page_rows.c.id)
        .outerjoin(current, true())
        .options(*(LAB_DETAILS if with_nodes else (defer(Lab.topology),)))
        .order_by(page_rows.c.created_at.desc(), page_rows.c.id.desc())
    ).all()
    labs = [lab for lab, _, _ in rows]
    if rows:
        total = rows[0][2]
    else:  # a page past the end has no rows to count with
        total = db.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    # The page's current jobs, kept for the request (current_job).
    g.ltb_current_jobs = {lab.id: lab_job for lab, lab_job, _ in rows}
    return labs, total


# One lab's nodes joined with their interfaces (a few rows each), its links apart (joined
# too, they would multiply the rows).
ONE_LAB_DETAILS = (
    joinedload(Lab.nodes).joinedload(Node.interfaces),
    selectinload(Lab.connections),
)


def lab_with_details(user: User, lab_id: int) -> Lab:
    """The lab for its own page, checked by portal.access.lab_or_404 (404 for a lab the
    user may not see), with its nodes and their interfaces and its current job (one joined
    query) and its links (one more) rather than one query per node as lazy loading makes."""
    if 1 <= lab_id <= LARGEST_ID:
        job, current = current_job_lateral(Lab.id)
        query = (
            select(Lab, job)
            .outerjoin(current, true())
            .where(Lab.id == lab_id)
            .options(*ONE_LAB_DETAILS)
        )
        # Held until checked: lab_or_404 finds it in the session, which keeps an object only
        # while something refers to it.
        loaded = db.session.execute(query).unique().one_or_none()
        if loaded is not None:
            g.ltb_current_jobs = {lab_id: loaded[1]}
    return lab_or_404(user, lab_id)


def _current_job_order() -> tuple[Any, ...]:
    """What makes a job a lab's current one: queued or running first, then the latest."""
    active_first = case((Job.status.in_(ACTIVE_JOB_STATUSES), 0), else_=1)
    return (active_first, Job.enqueued_at.desc(), Job.id.desc())


def current_job_lateral(lab_id: Any) -> tuple[Any, Any]:
    """The current job of the lab whose id is the column `lab_id` of the outer query, as a
    LATERAL subquery to outer-join ON true (one index lookup per lab of the outer rows), and
    the Job entity read from it (None for a lab with no job)."""
    current = (
        select(Job)
        .where(Job.lab_id == lab_id)
        .order_by(*_current_job_order())
        .limit(1)
        .lateral("current_job")
    )
    return aliased(Job, current), current


def current_jobs(lab_ids: list[int]) -> dict[int, Job]:
    """Each lab's queued or running job, else its latest: one row per lab (PostgreSQL's
    DISTINCT ON), never all its jobs."""
    if not lab_ids:
        return {}
    jobs = db.session.scalars(
        select(Job)
        .where(Job.lab_id.in_(lab_ids))
        .ext(distinct_on(Job.lab_id))
        .order_by(Job.lab_id, *_current_job_order())
    )
    return {job.lab_id: job for job in jobs}


def current_job(lab: Lab) -> Job | None:
    """The lab's queued or running job, else its latest (read with the lab where
    visible_labs or lab_with_details loaded it)."""
    known = g.get("ltb_current_jobs", {})
    if lab.id in known:
        return known[lab.id]
    return current_jobs([lab.id]).get(lab.id)


def lab_jobs(lab: Lab, page: int, per_page: int) -> tuple[list[Job], int]:
    """One page of the lab's jobs, latest first, and how many it has."""
    total = db.session.scalar(select(func.count()).where(Job.lab_id == lab.id))
    jobs = db.session.scalars(
        select(Job)
        .where(Job.lab_id == lab.id)
        .order_by(Job.enqueued_at.desc(), Job.id.desc())
        .offset((page - 1) * per_page)
        .limit(per_page)
    ).all()
    return list(jobs), total or 0


def find_node(lab: Lab, name: str) -> Any:
    for node in lab.nodes:
        if node.name == name:
            return node
    raise HTTPError(404, f"lab {lab.name} has no node {name!r}")


def node_info(lab: Lab, name: str) -> dict[str, Any]:
    """A node's device information: what the topology says, and what the node says now, read
    on the node's hypervisor (this machine or another one, through it)."""
    row = find_node(lab, name)
    parsed, _ = lab_model(lab)  # the store's allocation: no deployed copy is needed here
    model_node = parsed.node(name)
    info: dict[str, Any] = {
        "name": row.name,
        "kind": row.kind,
        "image": row.image,
        "mgmt_ipv4": row.mgmt_ipv4,
        "ssh": " ".join(ssh_argv(row.mgmt_ipv4.split("/")[0], key=PLATFORM_SSH_KEY)),
        "ssh_bastion": ssh_one_liner(row.mgmt_ipv4),
        "groups": list(model_node.groups),
        "startup_files": [path for path, _ in model_node.files],
        "interfaces": [{"name": i.name, "ipv4": i.ipv4, "ipv6": i.ipv6} for i in row.interfaces],
        "state": node_states(lab)[row.name],
    }
    if lab.state != LabState.RUNNING:
        info["live"] = {"reachable": False, "error": f"the lab is {lab.state}, not running"}
        return info
    try:
        via = reach_hypervisor(lab, model_node.hypervisor or lab.hypervisor)
    except (LookupError, capture.CaptureError) as error:
        info["live"] = {"reachable": False, "error": str(error)}
        return info
    reader: ContainerReader | RemoteContainerReader | SshReader
    if kinds.get(row.kind).runtime == kinds.DOCKER:  # else SSH, the way into any node
        container = parsed.container_name(name)
        reader = (
            ContainerReader(container) if via is None else RemoteContainerReader(container, via)
        )
    else:
        reader = SshReader(str(model_node.mgmt_ipv4.ip), Path(PLATFORM_SSH_KEY), via=via)
    info["live"] = vars(read_device_info(reader))
    return info


def lab_model(lab: Lab) -> tuple[model.Lab, bool]:
    """The lab's model under the allocation it holds (its real management addresses), and
    whether it holds one; a lab that holds none has only the addresses it would prefer."""
    # A spread lab's nodes where its placement put them, as its jobs deploy them.
    parsed = parse_lab(placed_topology(lab.topology, lab.placement), f"lab {lab.name}")
    held = allocations.held(lab)
    if held is None:
        return parsed, False
    return parsed.with_allocation(held.allocation), True


# Hypervisors whose nodes the portal reads itself (it runs on them): the default inventory's
# one. Others are reached over SSH with their inventory's settings (reach_hypervisor).
LOCAL_HYPERVISORS = ("localhost",)


def reach_hypervisor(lab: Lab, name: str) -> capture.SshHypervisor | None:
    """How the portal reaches hypervisor `name` of the lab: None for this machine, else over
    SSH with its settings in the hypervisors' inventory (LookupError when it has none there,
    capture.CaptureError when they cannot be used)."""
    if name in LOCAL_HYPERVISORS:
        return None
    found = hypervisor_vars(Path(current_app.config["LTB_HYPERVISORS"])).get(name)
    if found is None:
        raise LookupError(f"hypervisor {name} of lab {lab.name} is not in the inventory")
    return capture.ssh_hypervisor(name, found)


def node_states(lab: Lab) -> dict[str, str]:
    """Each node's state now on its hypervisor (ltb.node_state: running, stopped, missing,
    unknown...), read once for all labs of a hypervisor and kept a few seconds."""
    kinds = {node.name: node.kind for node in lab.nodes}
    # A reading from before the lab's last job ended (its deploy) would show its nodes missing.
    changed = lab.updated_at.timestamp() if lab.updated_at else None
    if (
        lab.hypervisor in LOCAL_HYPERVISORS
        and "hypervisor" not in lab.topology
        and not lab.placement
    ):
        # No node elsewhere: no parsing (polled).
        return read_node_states(lab.name, kinds, changed_after=changed)
    try:
        parsed = parse_lab(lab.topology, f"lab {lab.name}")
        own_hypervisor = {node.name: node.hypervisor for node in parsed.nodes}
        own_hypervisor |= lab.placement or {}  # a spread lab's nodes where it placed them
    except TopologyError as error:
        # A state is never worth a 500: the nodes are then looked for on the lab's hypervisor.
        log.warning("node states of lab %s: %s", lab.name, error)
        own_hypervisor = {}
    placed: dict[str, dict[str, str]] = {}
    for node, kind in kinds.items():
        placed.setdefault(own_hypervisor.get(node) or lab.hypervisor, {})[node] = kind
    states: dict[str, str] = {}
    for hypervisor, its_kinds in placed.items():
        try:
            via = reach_hypervisor(lab, hypervisor)
        except (LookupError, capture.CaptureError) as error:
            log.warning("node states of lab %s: %s", lab.name, error)
            states |= dict.fromkeys(its_kinds, "unknown")
            continue
        uri = DEFAULT_LIBVIRT_URI
        if via is not None:
            found = hypervisor_vars(Path(current_app.config["LTB_HYPERVISORS"]))[hypervisor]
            uri = str(found.get("ltb_libvirt_uri", DEFAULT_LIBVIRT_URI))
        states |= read_node_states(lab.name, its_kinds, via, uri, changed_after=changed)
    return states


def lab_picture(lab: Lab) -> str:
    """The lab's topology picture (SVG), with management addresses while it holds them and
    each node's state."""
    parsed, allocated = lab_model(lab)
    return topology_svg(parsed, with_mgmt=allocated, states=node_states(lab))


def parse_endpoint(lab: Lab, endpoint: str) -> str:
    """NODE:INTERFACE of the lab's topology; 422 naming what is wrong otherwise."""
    node_name, sep, interface = endpoint.partition(":")
    nodes = {node.name: node for node in lab.nodes}
    if not sep or node_name not in nodes:
        raise HTTPError(
            422,
            f"endpoint {endpoint!r} is not NODE:INTERFACE of a node of lab {lab.name}",
            {"endpoint": f"nodes: {', '.join(nodes)}"},
        )
    names = [i.name for i in nodes[node_name].interfaces]
    if interface not in names:
        raise HTTPError(
            422,
            f"node {node_name} of lab {lab.name} has no interface {interface!r}",
            {"endpoint": f"interfaces of {node_name}: {', '.join(names)}"},
        )
    return endpoint


def capture_pcap(
    lab: Lab, endpoint: str, scope: str, seconds: float, packets: int, size: int
) -> Iterator[bytes]:
    """A bounded pcap stream of a running lab's link or interface. Everything is checked and
    the capture is listening before this returns, so errors are answers, not broken
    downloads; the mirror goes when the stream ends or is closed."""
    parse_endpoint(lab, endpoint)
    if lab.state != LabState.RUNNING:
        raise HTTPError(409, f"lab {lab.name} is {lab.state}; a capture needs it running")
    try:
        bounds = capture.CaptureBounds(seconds, packets, size)
        via = capture_hypervisor(lab, endpoint)
        stream = capture.capture_stream(lab.name, endpoint, scope=scope, bounds=bounds, via=via)
        header = next(stream, b"")
    except (capture.CaptureError, MirrorError) as error:
        raise HTTPError(422, str(error)) from None
    return _pcap(header, stream)


def capture_hypervisor(lab: Lab, endpoint: str) -> capture.SshHypervisor | None:
    """Where the endpoint's node runs (its own hypervisor in a spread lab, else the lab's):
    None for this machine, else how to reach it over SSH, from the hypervisors' inventory."""
    parsed, _ = lab_model(lab)
    name = parsed.node(endpoint.partition(":")[0]).hypervisor or lab.hypervisor
    try:
        return reach_hypervisor(lab, name)
    except LookupError as error:
        raise HTTPError(409, str(error)) from None


def _pcap(header: bytes, stream: Generator[bytes, None, None]) -> Iterator[bytes]:
    """The pcap download; closing it (the client went away) ends the capture and removes
    its mirror (werkzeug closes a response's iterable)."""
    try:
        yield header
        yield from stream
    finally:
        stream.close()
