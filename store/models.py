"""The running-lab store: labs with their nodes, interfaces and connections, the task jobs run
on them with their events, and reservations. PostgreSQL is the source of truth; Redis only
holds the queues. Times are UTC (timestamptz)."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Integer, String, Text, false
from sqlalchemy.dialects.postgresql import CIDR, JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from store.db import db

# JSONB on PostgreSQL, plain JSON elsewhere.
Json = JSON().with_variant(JSONB(), "postgresql")
# cidr on PostgreSQL (read as ipaddress networks), text elsewhere.
Cidr = String(18).with_variant(CIDR(), "postgresql")


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
    CANCELLED = "cancelled"  # cancelled before its start


class Lab(db.Model):
    __tablename__ = "labs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(32), unique=True)
    owner: Mapped[str | None] = mapped_column(String(64))
    # The portal's user who owns the lab, the template version it was made from and the
    # course it belongs to; empty for labs of the job CLI.
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    template_version_id: Mapped[int | None] = mapped_column(ForeignKey("template_versions.id"))
    course_id: Mapped[int | None] = mapped_column(
        ForeignKey("courses.id", ondelete="SET NULL"), index=True
    )
    # What users call the lab (the name is unique on the platform, the title is theirs).
    title: Mapped[str | None] = mapped_column(String(128))
    topology: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default=LabState.REMOVED.value)
    hypervisor: Mapped[str] = mapped_column(String(255))
    # A lab spread over several hypervisors by its placement (store.capacity.spread): node ->
    # hypervisor, which its jobs deploy (store.labs.placed_topology); None: its nodes run on
    # `hypervisor`, or where their topology's `hypervisor:` keys pin them.
    placement: Mapped[dict[str, str] | None] = mapped_column(Json, nullable=True)
    # The lab's allocation (store.allocations): its tag and management subnet, held apart
    # from every other lab's from when it is recorded until it is removed; None: held none.
    tag: Mapped[str | None] = mapped_column(String(6), unique=True)
    mgmt_subnet: Mapped[Any] = mapped_column(Cidr, nullable=True)
    mgmt_subnet_given: Mapped[bool] = mapped_column(default=False, server_default=false())
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
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    template_version_id: Mapped[int | None] = mapped_column(ForeignKey("template_versions.id"))
    course_id: Mapped[int | None] = mapped_column(
        ForeignKey("courses.id", ondelete="SET NULL"), index=True
    )
    # Capacity the lab needs while it runs, for the hypervisors' over-commit check.
    cpus: Mapped[float | None] = mapped_column()
    memory_bytes: Mapped[int | None] = mapped_column(BigInteger)
    nodes: Mapped[int | None] = mapped_column(Integer)
    # The hypervisor its placement chose when booked (or moved); its lab is deployed there.
    # None: booked before reservations recorded one (placed first-fit at each check).
    hypervisor: Mapped[str | None] = mapped_column(String(255))
    # A reservation whose lab is spread (store.capacity.spread): node -> hypervisor, which its
    # lab is deployed with; None: on `hypervisor`.
    placement: Mapped[dict[str, str] | None] = mapped_column(Json, nullable=True)
    topology: Mapped[str] = mapped_column(Text)
    start_at: Mapped[datetime] = _timestamp(nullable=False)
    end_at: Mapped[datetime] = _timestamp(nullable=False)
    state: Mapped[str] = mapped_column(String(16), default=ReservationState.SCHEDULED.value)
    late: Mapped[bool] = mapped_column(default=False)
    started_at: Mapped[datetime | None] = _timestamp()
    ended_at: Mapped[datetime | None] = _timestamp()
    deploy_job_id: Mapped[str | None] = mapped_column(String(64))
    remove_job_id: Mapped[str | None] = mapped_column(String(64))


# The portal: users, their tokens, templates, courses ---------------------------------------


class Role(enum.StrEnum):
    ADMIN = "admin"
    TEACHER = "teacher"
    STUDENT = "student"


class Visibility(enum.StrEnum):
    PRIVATE = "private"  # its owner (and admins)
    COURSE = "course"  # also the teacher and students of its course
    PUBLIC = "public"  # every user


class User(db.Model):
    """A person who uses the portal. Quotas left empty take the platform's defaults."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(32), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(128))
    # argon2id hash (argon2-cffi); never the password itself.
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default=Role.STUDENT.value)
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = _timestamp(nullable=False)
    last_login_at: Mapped[datetime | None] = _timestamp()
    # Bumped when the password changes or the user is disabled: older sessions stop working.
    session_epoch: Mapped[int] = mapped_column(Integer, default=0)
    quota_running_labs: Mapped[int | None] = mapped_column(Integer)
    quota_nodes: Mapped[int | None] = mapped_column(Integer)
    quota_memory_bytes: Mapped[int | None] = mapped_column(BigInteger)
    quota_reservation_hours_week: Mapped[int | None] = mapped_column(Integer)

    tokens: Mapped[list[ApiToken]] = relationship(
        back_populates="user", cascade="all, delete-orphan", order_by="ApiToken.id"
    )
    ssh_keys: Mapped[list[SshKey]] = relationship(
        back_populates="user", cascade="all, delete-orphan", order_by="SshKey.id"
    )


class ApiToken(db.Model):
    """A personal API token: shown once, stored as its SHA-256, revocable, with an expiry."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The first characters of the token, to tell tokens apart in lists.
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = _timestamp(nullable=False)
    expires_at: Mapped[datetime] = _timestamp(nullable=False)
    revoked_at: Mapped[datetime | None] = _timestamp()
    last_used_at: Mapped[datetime | None] = _timestamp()

    user: Mapped[User] = relationship(back_populates="tokens")


class SshKey(db.Model):
    """An SSH public key of a user, for the bastion (the access issue)."""

    __tablename__ = "ssh_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    public_key: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = _timestamp(nullable=False)

    user: Mapped[User] = relationship(back_populates="ssh_keys")


class LoginFailure(db.Model):
    """A failed login, to slow down guessing per account and per address."""

    __tablename__ = "login_failures"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    username: Mapped[str] = mapped_column(String(64), index=True)
    address: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = _timestamp(nullable=False)


class Course(db.Model):
    """A class: a teacher, students, a template and a time slot; each student gets a lab."""

    __tablename__ = "courses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    teacher_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    join_code: Mapped[str | None] = mapped_column(String(32), unique=True)
    # Created after template_versions (which refer to courses through templates).
    template_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("template_versions.id", use_alter=True, name="fk_courses_template_version")
    )
    start_at: Mapped[datetime | None] = _timestamp()
    end_at: Mapped[datetime | None] = _timestamp()
    created_at: Mapped[datetime] = _timestamp(nullable=False)

    teacher: Mapped[User] = relationship(foreign_keys=[teacher_id])
    members: Mapped[list[CourseMember]] = relationship(
        back_populates="course", cascade="all, delete-orphan"
    )


class CourseMember(db.Model):
    __tablename__ = "course_members"

    course_id: Mapped[int] = mapped_column(
        ForeignKey("courses.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )

    course: Mapped[Course] = relationship(back_populates="members")
    user: Mapped[User] = relationship()


class Template(db.Model):
    """A topology template; its content lives in versions (an edit makes a new one)."""

    __tablename__ = "templates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(Text)
    visibility: Mapped[str] = mapped_column(String(16), default=Visibility.PRIVATE.value)
    course_id: Mapped[int | None] = mapped_column(ForeignKey("courses.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = _timestamp(nullable=False)
    updated_at: Mapped[datetime] = _timestamp(nullable=False)

    owner: Mapped[User] = relationship()
    versions: Mapped[list[TemplateVersion]] = relationship(
        back_populates="template", cascade="all, delete-orphan", order_by="TemplateVersion.number"
    )


class TemplateVersion(db.Model):
    __tablename__ = "template_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    template_id: Mapped[int] = mapped_column(
        ForeignKey("templates.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int] = mapped_column(Integer)
    topology: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _timestamp(nullable=False)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    template: Mapped[Template] = relationship(back_populates="versions")
