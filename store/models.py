"""The running-lab store: labs with their nodes, interfaces and connections, the task jobs run
on them with their events, and reservations. PostgreSQL is the source of truth; Redis only
holds the queues. Times are UTC (timestamptz)."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from store.db import db

# JSONB on PostgreSQL, plain JSON elsewhere.
Json = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


def _timestamp(nullable: bool = True) -> Any:
    return mapped_column(DateTime(timezone=True), nullable=nullable)


class LabState(enum.StrEnum):
    DEPLOYING = "deploying"
    RUNNING = "running"
    FAILED = "failed"
    REMOVING = "removing"
    REMOVED = "removed"


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    STARTED = "started"
    SUCCESSFUL = "successful"
    FAILED = "failed"
    CANCELED = "canceled"
    TIMEOUT = "timeout"


ACTIVE_JOB_STATUSES = (JobStatus.QUEUED.value, JobStatus.STARTED.value)


class ReservationState(enum.StrEnum):
    SCHEDULED = "scheduled"  # waiting for its start
    STARTED = "started"  # its lab's deploy was requested
    ENDED = "ended"  # its lab's remove was requested
    MISSED = "missed"  # its whole time passed while nothing ran


class Lab(db.Model):
    __tablename__ = "labs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(32), unique=True)
    owner: Mapped[str | None] = mapped_column(String(64))
    topology: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default=LabState.REMOVED.value)
    hypervisor: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = _timestamp(nullable=False)
    updated_at: Mapped[datetime] = _timestamp(nullable=False)

    nodes: Mapped[list[Node]] = relationship(
        back_populates="lab", cascade="all, delete-orphan", order_by="Node.id"
    )
    connections: Mapped[list[Connection]] = relationship(
        back_populates="lab", cascade="all, delete-orphan", order_by="Connection.index"
    )
    jobs: Mapped[list[Job]] = relationship(back_populates="lab", order_by="Job.enqueued_at")


class Node(db.Model):
    __tablename__ = "nodes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    lab_id: Mapped[int] = mapped_column(ForeignKey("labs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(32))
    image: Mapped[str | None] = mapped_column(String(255))
    mgmt_ipv4: Mapped[str] = mapped_column(String(64))

    lab: Mapped[Lab] = relationship(back_populates="nodes")
    interfaces: Mapped[list[Interface]] = relationship(
        back_populates="node", cascade="all, delete-orphan", order_by="Interface.id"
    )


class Connection(db.Model):
    """A link of the lab: a segment (VLAN on the lab bridge) joining two or more interfaces."""

    __tablename__ = "connections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    lab_id: Mapped[int] = mapped_column(ForeignKey("labs.id", ondelete="CASCADE"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    vlan: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(Text)

    lab: Mapped[Lab] = relationship(back_populates="connections")
    interfaces: Mapped[list[Interface]] = relationship(back_populates="connection")


class Interface(db.Model):
    __tablename__ = "interfaces"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"), index=True)
    connection_id: Mapped[int | None] = mapped_column(
        ForeignKey("connections.id", ondelete="SET NULL"), index=True
    )
    name: Mapped[str] = mapped_column(String(15))
    host_name: Mapped[str] = mapped_column(String(15))
    ipv4: Mapped[str | None] = mapped_column(String(64))
    ipv6: Mapped[str | None] = mapped_column(String(64))

    node: Mapped[Node] = relationship(back_populates="interfaces")
    connection: Mapped[Connection | None] = relationship(back_populates="interfaces")


class Job(db.Model):
    """One task (deploy, remove, mirror...) run on a lab; its id is the rq job's id."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    lab_id: Mapped[int] = mapped_column(ForeignKey("labs.id", ondelete="CASCADE"), index=True)
    task: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED.value, index=True)
    # The lab's state when the job was requested, restored if the job never starts.
    lab_state_before: Mapped[str] = mapped_column(String(16))
    enqueued_at: Mapped[datetime] = _timestamp(nullable=False)
    started_at: Mapped[datetime | None] = _timestamp()
    ended_at: Mapped[datetime | None] = _timestamp()
    # Where the job runs: the rq worker, and the work horse process (host, pid, start time),
    # so that a job whose process is gone can be told from one that still runs.
    worker: Mapped[str | None] = mapped_column(String(255))
    host: Mapped[str | None] = mapped_column(String(255))
    pid: Mapped[int | None] = mapped_column(Integer)
    pid_started: Mapped[str | None] = mapped_column(String(32))
    # When a cancel was asked for: the running job stops its playbook when it sees this.
    cancel_requested_at: Mapped[datetime | None] = _timestamp()
    progress: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    result: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)

    lab: Mapped[Lab] = relationship(back_populates="jobs")
    events: Mapped[list[JobEvent]] = relationship(
        back_populates="job", cascade="all, delete-orphan", order_by="JobEvent.seq"
    )


class JobEvent(db.Model):
    """An ansible-runner event of a job, with secrets redacted before it is stored."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    event: Mapped[str] = mapped_column(String(64))
    host: Mapped[str | None] = mapped_column(String(255))
    task: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _timestamp(nullable=False)
    data: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)

    job: Mapped[Job] = relationship(back_populates="events")


class Reservation(db.Model):
    """A lab booked for a time: deployed at `start_at`, removed at `end_at`."""

    __tablename__ = "reservations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    lab_name: Mapped[str] = mapped_column(String(32), index=True)
    owner: Mapped[str | None] = mapped_column(String(64))
    topology: Mapped[str] = mapped_column(Text)
    start_at: Mapped[datetime] = _timestamp(nullable=False)
    end_at: Mapped[datetime] = _timestamp(nullable=False)
    state: Mapped[str] = mapped_column(String(16), default=ReservationState.SCHEDULED.value)
    late: Mapped[bool] = mapped_column(default=False)
    started_at: Mapped[datetime | None] = _timestamp()
    ended_at: Mapped[datetime | None] = _timestamp()
    deploy_job_id: Mapped[str | None] = mapped_column(String(64))
    remove_job_id: Mapped[str | None] = mapped_column(String(64))
