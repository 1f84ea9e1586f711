"""Lab tasks as rq jobs: deploy and remove through workers, the running-lab store, progress,
events without secrets, one task per lab, dead workers, cancellation and reservations."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from rq import Queue
from sqlalchemy import select

from jobs import tasks
from jobs.queue import cancel, submit
from jobs.reservations import (
    ReservationConflict,
    create_reservation,
    reconcile,
    schedule,
    scheduled_edges,
    scheduler,
)
from ltb.deployed import DEFAULT_STATE_DIR
from ltb.resources import find_lab_resources
from ltb.snapshot import delete_snapshot
from store.labs import LabBusy, LabError
from store.models import Job, JobEvent, JobStatus, Lab, utcnow
from tests.integration.conftest import assert_no_leftovers
from tests.jobs.conftest import (
    TASK_WAIT,
    job_ended,
    job_row,
    lab_row,
    reservation_row,
    reservation_runs_its_course,
    run_to_end,
    slow_pair,
    wait_for,
)

pytestmark = pytest.mark.integration


def platform_public_key() -> str | None:
    path = Path("/var/lib/ltb/ssh/id_ed25519.pub")
    return path.read_text().split()[1] if path.exists() else None


def test_jobs_deploy_a_lab_one_at_a_time_with_progress_and_events_snapshot_mirror_remove_it(
    store, processes, topology, cleanup, redis_db, job_settings, docker_client, request
):
    """One lab through the job layer's lab tasks (one deploy and one remove for all): two
    deploys at once of which one runs, the deploy's progress and events, a snapshot and a
    restore that give back the lab as it was, a mirror, and a remove that leaves nothing."""
    lab = "job-deploy"
    cleanup[lab] = text = topology("pair.lab.yml", lab)
    request.addfinalizer(lambda: delete_snapshot(lab, "s1"))
    processes.start("worker")
    processes.start("worker")

    outcomes: list[str | Exception] = []
    barrier = threading.Barrier(2)

    def deploy() -> None:
        barrier.wait()
        try:
            outcomes.append(submit(lab, "deploy", topology=text))
        except LabBusy as busy:
            outcomes.append(busy)

    threads = [threading.Thread(target=deploy) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    job_ids = [o for o in outcomes if isinstance(o, str)]
    assert len(job_ids) == 1 and sum(isinstance(o, LabBusy) for o in outcomes) == 1
    [job_id] = job_ids
    assert lab_row(store, lab).state == "deploying"
    queue = Queue(job_settings.queue, connection=redis_db)
    seen = wait_for(
        lambda: (queue.fetch_job(job_id).get_meta().get("progress") or {}).get("tasks_done"),
        TASK_WAIT,
        "progress in job.meta",
        processes,
    )
    assert seen > 0

    # A second deploy that reaches the queue anyway (not through submit) is not run while
    # the first holds the lab: the other worker takes it and refuses it.
    forged = str(uuid.uuid4())
    with store.begin() as session:
        lab_id = session.scalars(select(Lab.id).where(Lab.name == lab)).one()
        session.add(
            Job(
                id=forged,
                lab_id=lab_id,
                task="deploy",
                params={},
                status="queued",
                lab_state_before="deploying",
                enqueued_at=utcnow(),
                progress={},
                result={},
            )
        )
    queue.enqueue_call(tasks.deploy, args=(lab,), job_id=forged)
    refused = run_to_end(store, processes, forged)
    assert refused.status == JobStatus.FAILED and "another task" in refused.result["error"]
    assert refused.started_at is None
    assert job_row(store, job_id).status == "started", "the refusal touched the first job"

    job = run_to_end(store, processes, job_id)

    assert job.status == JobStatus.SUCCESSFUL, job.result
    assert lab_row(store, lab).state == "running"
    assert job.started_at >= job.enqueued_at and job.ended_at > job.started_at
    assert job.progress["tasks_done"] == job.result["tasks"] > 10
    assert job.progress["current_task"]
    # Container nodes are deployed per lab, on the hypervisor: no per-node plays.
    assert "localhost" in job.progress["hosts"]
    assert all(h["failed"] == 0 for h in job.progress["hosts"].values())
    assert job.result["stats"]["failures"] == {}
    with store() as session:
        lab_record = session.scalars(select(Lab).where(Lab.name == lab)).one()
        assert [n.name for n in lab_record.nodes] == ["a", "b"]
        [link] = lab_record.connections
        assert sorted(i.node.name for i in link.interfaces) == ["a", "b"]
        events = session.scalars(
            select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.seq)
        ).all()
        assert not session.scalars(select(JobEvent).where(JobEvent.job_id == forged)).all()
    kinds = [e.event for e in events]
    assert kinds[0] == "playbook_on_start" and kinds[-1] == "playbook_on_stats"
    assert kinds.count("playbook_on_task_start") == job.result["tasks"]
    key = platform_public_key()
    assert key is None or not any(key in str(e.data) for e in events), "key stored in events"

    # Snapshot and restore give back the lab as it was.
    node_a = docker_client.containers.get(f"ltb-{lab}.a")
    assert node_a.exec_run(["sh", "-c", "echo before > /root/state.txt"]).exit_code == 0
    route = ["ip", "route", "add", "10.99.0.0/16", "via", "10.201.12.2"]
    assert node_a.exec_run(route).exit_code == 0

    with pytest.raises(LabError, match="snapshot name 'Bad/Name' is not allowed"):
        submit(lab, "snapshot", params={"name": "Bad/Name"})
    with pytest.raises(LabError, match="restore needs name"):
        submit(lab, "restore")
    taken = run_to_end(store, processes, submit(lab, "snapshot", params={"name": "s1"}))
    assert taken.status == JobStatus.SUCCESSFUL, taken.result
    assert lab_row(store, lab).state == "running"
    assert (DEFAULT_STATE_DIR / "snapshots" / lab / "s1" / "snapshot.json").is_file()

    # A snapshot that is not there: refused before the lab is touched, which stays running.
    missing = run_to_end(store, processes, submit(lab, "restore", params={"name": "nope"}))
    assert missing.status == JobStatus.FAILED
    assert "has no snapshot 'nope'" in str(missing.result["failures"])
    assert lab_row(store, lab).state == "running"

    assert node_a.exec_run(["sh", "-c", "echo after > /root/state.txt"]).exit_code == 0
    restored = run_to_end(store, processes, submit(lab, "restore", params={"name": "s1"}))
    assert restored.status == JobStatus.SUCCESSFUL, restored.result
    assert lab_row(store, lab).state == "running"
    node_a = docker_client.containers.get(f"ltb-{lab}.a")
    assert node_a.exec_run(["cat", "/root/state.txt"]).output == b"before\n"
    assert b"10.99.0.0/16 via 10.201.12.2" in node_a.exec_run(["ip", "route"]).output

    params = {"name": "s1", "action": "delete"}
    deleted = run_to_end(store, processes, submit(lab, "snapshot", params=params))
    assert deleted.status == JobStatus.SUCCESSFUL, deleted.result
    assert not (DEFAULT_STATE_DIR / "snapshots" / lab).exists()

    params = {"endpoint": "a:eth1"}
    mirrored = run_to_end(store, processes, submit(lab, "mirror", params=params))
    assert mirrored.status == JobStatus.SUCCESSFUL, mirrored.result
    assert find_lab_resources(lab).mirrors
    assert lab_row(store, lab).state == "running"

    removal = run_to_end(store, processes, submit(lab, "remove"))
    assert removal.status == JobStatus.SUCCESSFUL, removal.result
    assert lab_row(store, lab).state == "removed"
    assert removal.progress["tasks_expected"] is None  # the lab's first remove
    assert_no_leftovers(lab)


def test_worker_killed_mid_deploy_leaves_the_lab_failed_and_remove_cleans_up(
    store, processes, topology, cleanup
):
    lab = "job-killed"
    cleanup[lab] = text = topology("pair.lab.yml", lab)
    worker = processes.start("worker")
    job_id = submit(lab, "deploy", topology=text)
    # Kill it once the lab is being built, so it is half built: as soon as anything of it is
    # on the hypervisor (its network; a pair's deploy is done ~2 s later). Its progress in the
    # store is written once a second at most, too seldom to be sure to see that play.
    wait_for(
        lambda: not find_lab_resources(lab).empty(),
        TASK_WAIT,
        "the lab's network",
        processes,
    )
    processes.kill(worker)
    assert job_row(store, job_id).status == "started"

    processes.start("worker")  # a worker that starts fails the jobs of dead workers
    failed = wait_for(lambda: job_ended(store, job_id), 60, "the orphan to fail", processes)
    assert failed.status == JobStatus.FAILED and "orphaned" in failed.result["error"]
    assert lab_row(store, lab).state == "failed"

    removal = run_to_end(store, processes, submit(lab, "remove"))
    assert removal.status == JobStatus.SUCCESSFUL, removal.result
    assert lab_row(store, lab).state == "removed"
    assert_no_leftovers(lab)


def test_cancelled_deploy_stops_and_remove_cleans_up(store, processes, topology, cleanup):
    lab = "job-cancel"
    cleanup[lab] = text = topology("pair.lab.yml", lab)
    processes.start("worker")
    job_id = submit(lab, "deploy", topology=text)
    wait_for(
        lambda: job_row(store, job_id).progress.get("tasks_done"), TASK_WAIT, "a task", processes
    )
    cancel(job_id)
    job = run_to_end(store, processes, job_id)
    assert job.status == JobStatus.CANCELED, job.result
    assert lab_row(store, lab).state == "failed"
    assert run_to_end(store, processes, submit(lab, "remove")).status == JobStatus.SUCCESSFUL
    assert_no_leftovers(lab)


def test_task_that_runs_past_its_timeout_is_stopped_and_leaves_the_lab_failed(
    store, processes, topology, cleanup
):
    lab = "job-timeout"
    cleanup[lab] = text = slow_pair(topology, lab, 60)  # runs past the 4 s timeout
    hasty = processes.start("worker", LTB_TASK_TIMEOUT="4")
    job = run_to_end(store, processes, submit(lab, "deploy", topology=text))
    assert job.status == JobStatus.TIMEOUT, job.result
    assert lab_row(store, lab).state == "failed"
    processes.stop(hasty)

    processes.start("worker")
    assert run_to_end(store, processes, submit(lab, "remove")).status == JobStatus.SUCCESSFUL
    assert_no_leftovers(lab)


def reserve(store, text: str, start_in: float, end_in: float) -> int:
    now = utcnow()
    with store.begin() as session:
        reservation = create_reservation(
            session, text, now + timedelta(seconds=start_in), now + timedelta(seconds=end_in)
        )
    return reservation


def test_reservation_deploys_its_lab_at_start_and_removes_it_at_end(
    store, processes, topology, cleanup
):
    lab = "resv-timed"
    cleanup[lab] = text = topology("pair.lab.yml", lab)
    processes.start("worker")
    processes.start("scheduler")
    # An end soon after the start: one that finds the deploy still running tries again until
    # it has ended (jobs.reservations.BUSY_RETRY), so the test waits for no idle time.
    reservation = reserve(store, text, start_in=3, end_in=13)
    schedule(scheduler(), reservation)

    reservation_runs_its_course(store, processes, reservation.id, lab)
    assert reservation_row(store, reservation.id).state == "ended"
    assert lab_row(store, lab).state == "removed"


def test_pending_reservation_runs_after_redis_is_flushed_and_the_scheduler_restarts(
    store, processes, topology, cleanup, redis_db
):
    lab = "resv-flushed"
    cleanup[lab] = text = topology("pair.lab.yml", lab)
    first = processes.start("scheduler")
    reservation = reserve(store, text, start_in=10, end_in=20)
    sched = scheduler()
    schedule(sched, reservation)
    assert scheduled_edges(sched) == {(reservation.id, "begin"), (reservation.id, "end")}

    processes.stop(first)
    redis_db.flushdb()
    assert scheduled_edges(sched) == set()
    processes.start("scheduler")
    processes.start("worker")

    reservation_runs_its_course(store, processes, reservation.id, lab)


def test_reconcile_starts_a_passed_start_late_and_ends_a_passed_end(store, topology, redis_db):
    late = reserve(store, topology("pair.lab.yml", "resv-late"), start_in=-30, end_in=600)
    over = reserve(store, topology("pair.lab.yml", "resv-over"), start_in=-600, end_in=-30)
    with store.begin() as session:
        session.get(type(over), over.id).state = "started"  # it ran; its end was lost
    ahead = reserve(store, topology("pair.lab.yml", "resv-ahead"), start_in=600, end_in=900)
    sched = scheduler()

    done = reconcile(sched)

    assert done == {
        "rescheduled": [late.id, ahead.id, ahead.id],
        "late": [late.id],
        "ended": [over.id],
    }
    assert reservation_row(store, late.id).late
    due = {tuple(job.meta["ltb_reservation"]) for job in sched.get_jobs(until=utcnow())}
    assert due == {(late.id, "begin"), (over.id, "end")}
    assert scheduled_edges(sched) == {
        (late.id, "begin"),
        (late.id, "end"),
        (over.id, "end"),
        (ahead.id, "begin"),
        (ahead.id, "end"),
    }
    assert reconcile(sched) == {"rescheduled": [], "late": [], "ended": []}


def test_overlapping_reservations_of_a_lab_are_refused(store, topology):
    text = topology("pair.lab.yml", "resv-booked")
    first = reserve(store, text, start_in=600, end_in=900)

    clash = rf"already reserved .* \(reservation {first.id}\)"
    with pytest.raises(ReservationConflict, match=clash):
        reserve(store, text, start_in=800, end_in=1000)
    with pytest.raises(ReservationConflict):
        reserve(store, text, start_in=300, end_in=1200)  # around it
    after = reserve(store, text, start_in=900, end_in=1000)  # starts as the first ends
    other_lab = reserve(store, topology("pair.lab.yml", "resv-other"), start_in=600, end_in=900)
    assert {after.id, other_lab.id}.isdisjoint({first.id})

    # Two requests for the same time at once: one is refused, whatever the timing.
    outcomes: list[str] = []

    def request() -> None:
        try:
            reserve(store, text, start_in=2000, end_in=2100)
            outcomes.append("reserved")
        except ReservationConflict:
            outcomes.append("refused")

    threads = [threading.Thread(target=request) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["refused"] * 3 + ["reserved"]

    # A reservation that ended frees its time.
    with store.begin() as session:
        session.get(type(first), first.id).state = "ended"
    assert reserve(store, text, start_in=700, end_in=800).id
