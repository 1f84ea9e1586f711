"""Business rules of the running-lab store, called by the portal, the jobs and the scheduler.

A lab runs one task at a time: `request_task` checks and changes the lab's state in the
transaction of its caller, with the lab's row locked (SELECT ... FOR UPDATE), so two requests
for the same lab cannot both pass. The worker adds a PostgreSQL advisory lock around the run
itself (jobs.tasks), so a task never runs alongside another one of its lab, however enqueued.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Callable
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from jobs.redact import redact
from ltb import model
from store import allocations
from store.models import (
    ACTIVE_JOB_STATUSES,
    Connection,
    Interface,
    Job,
    JobStatus,
    Lab,
    LabState,
    Node,
    utcnow,
)
from store.tasks import TaskError, lab_task


class LabError(Exception):
    pass


class LabBusy(LabError):
    """The lab has a task queued or running; a second one is refused, never run alongside."""

    def __init__(self, lab: str, job_id: str, task: str):
        self.lab, self.job_id, self.task = lab, job_id, task
        super().__init__(f"lab {lab!r} is busy: {task} job {job_id} is queued or running")


class LabNotFound(LabError):
    pass


class LabStateError(LabError):
    pass


def request_task(
    session: Session,
    lab_name: str,
    task: str,
    *,
    topology: str | None = None,
    owner: str | None = None,
    hypervisor: str | None = None,
    placement: dict[str, str] | None = None,
    default_hypervisor: str = "localhost",
    params: dict[str, Any] | None = None,
    owner_id: int | None = None,
    template_version_id: int | None = None,
    course_id: int | None = None,
    title: str | None = None,
    may_see: Callable[[Lab], bool] | None = None,
) -> Job:
    """Record a queued `task` job for the lab (created from `topology` if new) and move the
    lab to the task's state. The caller commits, then enqueues the job under `job.id`.
    Unknown tasks and parameters that break the task's rules (store.tasks) are refused.

    A new lab records the portal's fields (`owner_id`, `template_version_id`, `course_id`,
    `title`); a lab that exists keeps its own.

    `hypervisor`: where its placement put the lab (portal.capacity): a new lab, or a removed
    one deployed again, is recorded there, and its jobs run their playbooks there
    (jobs.tasks); a lab that is not removed cannot move (LabStateError). None: a new lab goes
    to `default_hypervisor` (the job layer's LTB_HYPERVISOR), a known one stays where it is.
    `placement`: with `hypervisor`, the nodes of a lab spread by its placement (node ->
    hypervisor, store.capacity.spread), recorded and moved by the same rules; None: all on
    `hypervisor` but for the nodes its topology pins."""
    try:
        spec = lab_task(task)
        spec.check_params(params or {})
    except TaskError as error:
        raise LabError(str(error)) from None
    lab_model, given = (
        allocations.parse_topology(topology, f"lab {lab_name}")
        if topology is not None
        else (None, None)
    )
    if lab_model is not None and lab_model.name != lab_name:
        raise LabError(f"the topology is of lab {lab_model.name!r}, not {lab_name!r}")
    now = utcnow()
    if lab_model is not None:
        session.execute(
            insert(Lab)
            .values(
                name=lab_name,
                owner=owner,
                owner_id=owner_id,
                template_version_id=template_version_id,
                course_id=course_id,
                title=title,
                topology=topology,
                state=LabState.REMOVED.value,
                hypervisor=hypervisor or default_hypervisor,
                placement=placement if hypervisor else None,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=["name"])
        )
    lab = session.scalars(select(Lab).where(Lab.name == lab_name).with_for_update()).one_or_none()
    if lab is None:
        raise LabNotFound(f"lab {lab_name!r} is not known; give its topology")
    session.refresh(lab)

    active = session.scalars(
        select(Job).where(Job.lab_id == lab.id, Job.status.in_(ACTIVE_JOB_STATUSES)).limit(1)
    ).first()
    if active is not None:
        raise LabBusy(lab_name, active.id, active.task)
    if hypervisor is not None and (hypervisor, placement) != (lab.hypervisor, lab.placement):
        if lab.state != LabState.REMOVED:
            raise LabStateError(
                f"lab {lab_name!r} is {lab.state} on hypervisor {lab.hypervisor!r}; remove it "
                f"before it runs on {hypervisor!r}" + (" and others (spread)" if placement else "")
            )
        lab.hypervisor, lab.placement = hypervisor, placement
    needs = spec.needs
    if needs is not None and lab.state not in needs:
        raise LabStateError(f"lab {lab_name!r} is {lab.state}; {task} needs it {needs[0]}")

    changed = lab_model is not None and (topology != lab.topology or not lab.nodes)
    if changed:
        if lab.state != LabState.REMOVED and topology != lab.topology:
            raise LabStateError(
                f"lab {lab_name!r} is {lab.state} with another topology; remove it first"
            )
        lab.topology = topology
        lab.owner = owner if owner is not None else lab.owner
    # The lab's tag and management subnet (store.allocations), held from its request on, so
    # the addresses recorded here are the ones its jobs deploy.
    before = allocations.held(lab)
    if lab_model is None and before is not None:
        allocation = before.allocation
    else:
        try:
            if lab_model is None:  # a lab that holds none: from its recorded topology
                lab_model, given = allocations.parse_topology(lab.topology, f"lab {lab_name}")
            allocation = allocations.allocate(session, lab, lab_model, given, may_see)
        except allocations.LabAllocationError as error:
            raise LabError(str(error)) from None
    if lab_model is not None and (changed or before is None or before.allocation != allocation):
        record_topology(lab, lab_model.with_allocation(allocation))

    job = Job(
        id=str(uuid.uuid4()),
        lab=lab,
        task=task,
        params=params or {},
        status=JobStatus.QUEUED.value,
        lab_state_before=lab.state,
        enqueued_at=now,
        progress={},
        result={},
    )
    if spec.while_running is not None:
        lab.state = spec.while_running.value
    lab.updated_at = now
    session.add(job)
    session.flush()
    return job


def placed_topology(topology: str, placement: dict[str, str] | None) -> str:
    """The topology a lab is deployed with: its own, with each node of a spread lab pinned
    (its `hypervisor:` key) where its placement put it, so the inventory places the nodes the
    way it places a topology's own pins (ltb.inventory.node_hypervisors). Unchanged when the
    lab is not spread."""
    if not placement:
        return topology
    data = yaml.safe_load(topology)
    nodes = data.get("nodes") or {}
    for name, where in placement.items():
        if name in nodes:
            nodes[name] = {**(nodes[name] or {}), "hypervisor": where}
    return yaml.safe_dump(data, sort_keys=False)


# A portal lab's name: the template's name cut to this length, '-' and random hex digits.
LAB_NAME_BASE_CHARS = 25
LAB_NAME_SUFFIX_BYTES = 3


def unique_lab_name(session: Session, base: str) -> str:
    """A lab name no lab of the store has, made from `base` (a template's name): labs of
    many users from one template must not share the names of what they create."""
    stem = re.sub(r"[^a-z0-9-]+", "-", base.lower()).strip("-")[:LAB_NAME_BASE_CHARS].strip("-")
    if not stem or not stem[0].isalpha():
        stem = f"lab-{stem}".strip("-")[:LAB_NAME_BASE_CHARS].strip("-")
    while True:
        name = f"{stem}-{secrets.token_hex(LAB_NAME_SUFFIX_BYTES)}"
        if session.scalars(select(Lab.id).where(Lab.name == name)).first() is None:
            return name


TOP_LEVEL_NAME = re.compile(r"^name:[^\n]*$", re.MULTILINE)


def renamed_topology(topology: str, name: str) -> str:
    """The topology text with its lab name set to `name`, comments and layout kept."""
    if len(TOP_LEVEL_NAME.findall(topology)) == 1:
        return TOP_LEVEL_NAME.sub(f"name: {name}", topology)
    # Flow style or no name line: through YAML (the text was validated, so it parses).
    data = yaml.safe_load(topology)
    data["name"] = name
    return yaml.safe_dump(data, sort_keys=False)


def record_topology(lab: Lab, lab_model: model.Lab) -> None:
    """Replace the lab's nodes, interfaces and connections with those of the model."""
    lab.nodes.clear()
    lab.connections.clear()
    connections = {
        link.vlan: Connection(index=link.index, vlan=link.vlan, name=link.name)
        for link in lab_model.links
    }
    lab.connections.extend(connections.values())
    for node in lab_model.nodes:
        row = Node(name=node.name, kind=node.kind, image=node.image, mgmt_ipv4=str(node.mgmt_ipv4))
        for interface in node.interfaces:
            row.interfaces.append(
                Interface(
                    name=interface.name,
                    host_name=interface.host_name,
                    ipv4=str(interface.ipv4) if interface.ipv4 else None,
                    ipv6=str(interface.ipv6) if interface.ipv6 else None,
                    connection=connections.get(interface.vlan) if interface.vlan else None,
                )
            )
        lab.nodes.append(row)


def finish_job(session: Session, job: Job, status: JobStatus, result: dict[str, Any]) -> None:
    """Record the end of a job and the lab state it leaves (in the caller's transaction).
    The result is stored with its secrets redacted (error texts too)."""
    job.status = status.value
    job.result = redact(result)
    job.ended_at = utcnow()
    lab = job.lab
    changed_nothing = "changed" in result.get("stats", {}) and not result["stats"]["changed"]
    if job.started_at is None or (status != JobStatus.SUCCESSFUL and changed_nothing):
        # Never ran, or stopped before it changed anything (a check refused it): the lab is as
        # it was before the request, unless another job of the lab runs (one queued around
        # request_task and refused the lab's lock): the lab's state is that job's.
        if not _another_job_started(session, job):
            lab.state = job.lab_state_before
    else:
        task = lab_task(job.task)
        after = task.on_success if status == JobStatus.SUCCESSFUL else task.on_failure
        if after is not None:
            lab.state = after.value
    lab.updated_at = job.ended_at
    if lab.state == LabState.REMOVED and not _another_job_started(session, job):
        # Nothing of the lab runs (a remove ended, or its first deploy never started): its
        # tag and subnet go back to the pool.
        allocations.release(lab)


def _another_job_started(session: Session, job: Job) -> bool:
    return (
        session.scalars(
            select(Job.id)
            .where(Job.lab_id == job.lab_id, Job.id != job.id, Job.status == JobStatus.STARTED)
            .limit(1)
        ).first()
        is not None
    )


def lab_summary(lab: Lab) -> dict[str, Any]:
    return {
        "name": lab.name,
        "owner": lab.owner,
        "state": lab.state,
        "hypervisor": lab.hypervisor,
        "placement": lab.placement,
        "nodes": [
            {
                "name": node.name,
                "kind": node.kind,
                "mgmt_ipv4": node.mgmt_ipv4,
                "interfaces": [
                    {"name": i.name, "ipv4": i.ipv4, "ipv6": i.ipv6, "link": i.connection_id}
                    for i in node.interfaces
                ],
            }
            for node in lab.nodes
        ],
        "links": [{"vlan": c.vlan, "name": c.name} for c in lab.connections],
    }


def job_summary(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "lab": job.lab.name,
        "task": job.task,
        "status": job.status,
        "enqueued_at": job.enqueued_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "ended_at": job.ended_at.isoformat() if job.ended_at else None,
        "progress": job.progress,
        "result": job.result,
    }
