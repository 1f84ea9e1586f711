"""A job's live progress for the portal: its events after a sequence number (polling), and
the same as server-sent events that end with the job.

The worker stores a job's events in PostgreSQL (jobs.tasks) with their runner sequence
number; both ways read from there, so a client that reconnects (SSE Last-Event-ID, or
`?after=` when polling) resumes exactly where it stopped, whichever portal process it hits.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.models import ACTIVE_JOB_STATUSES, Job, JobEvent

# Events per answer of the polling endpoint and per read of the stream.
EVENTS_PER_READ = 200
# The stream looks for new events this often, and sends a comment line after this much
# silence so that proxies and browsers keep the connection open.
POLL_SECONDS = 0.5
HEARTBEAT_SECONDS = 15.0
# A stream ends after this long even if its job does not (the client reconnects).
MAX_STREAM_SECONDS = 3600.0


def event_out(event: JobEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "event": event.event,
        "host": event.host,
        "task": event.task,
        "created_at": event.created_at.isoformat(),
        "data": event.data,
    }


def events_after(session: Session, job_id: str, after: int, limit: int = EVENTS_PER_READ):
    return session.scalars(
        select(JobEvent)
        .where(JobEvent.job_id == job_id, JobEvent.seq > after)
        .order_by(JobEvent.seq)
        .limit(limit)
    ).all()


def sse(data: dict[str, Any], event: str | None = None, event_id: int | None = None) -> str:
    """One server-sent event: JSON data on one line (json.dumps escapes newlines)."""
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    if event is not None:
        lines.append(f"event: {event}")
    lines.append(f"data: {json.dumps(data, default=str)}")
    return "\n".join(lines) + "\n\n"


def job_stream(
    new_session: Callable[[], Session],
    job_id: str,
    after: int,
    heartbeat: float = HEARTBEAT_SECONDS,
    poll: float = POLL_SECONDS,
    max_seconds: float = MAX_STREAM_SECONDS,
) -> Iterator[str]:
    """Server-sent events of the job from sequence number `after` on: one `progress` event
    per job event (id: its seq), then an `end` event with the job's status once the job has
    ended and every event was sent. A fresh session per read sees what the worker wrote."""
    started = last_sent = time.monotonic()
    yield "retry: 2000\n\n"
    while time.monotonic() - started < max_seconds:
        with new_session() as session:
            job = session.get(Job, job_id)
            if job is None:
                return
            # The status is read before the events: events stored before the end are sent.
            ended = job.status not in ACTIVE_JOB_STATUSES
            status, result = job.status, job.result
            events = events_after(session, job_id, after)
            chunks = [sse(event_out(e), "progress", e.seq) for e in events]
        if events:
            after = events[-1].seq
            last_sent = time.monotonic()
            yield "".join(chunks)
            continue
        if ended:
            yield sse({"status": status, "error": result.get("error")}, "end")
            return
        if time.monotonic() - last_sent >= heartbeat:
            last_sent = time.monotonic()
            yield ": heartbeat\n\n"
        time.sleep(poll)
