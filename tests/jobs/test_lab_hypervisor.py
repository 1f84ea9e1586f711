"""A lab's jobs run their playbooks against the hypervisor the lab is recorded on, not the
worker's default (LTB_HYPERVISOR): a real worker, a real playbook run, on an inventory with a
second hypervisor entry. The second entry is this machine under another name (a local
connection): nothing is deployed to a host that does not exist."""

from __future__ import annotations

from datetime import timedelta

import pytest
import yaml
from sqlalchemy import select

from jobs.queue import cancel, submit
from jobs.reservations import begin, create_reservation
from store.labs import LabStateError, finish_job, request_task
from store.models import JobEvent, JobStatus, LabState, utcnow
from tests.jobs.conftest import ROOT, lab_row, run_to_end

pytestmark = pytest.mark.integration

LOCAL = {
    "ansible_connection": "local",
    "ansible_python_interpreter": "{{ ansible_playbook_python }}",
}


@pytest.fixture
def two_hypervisors(tmp_path):
    """An inventory directory whose hypervisors are localhost and `mh-second` (this machine
    again), with the platform's group_vars."""
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    hosts = {"hypervisors": {"hosts": {"localhost": LOCAL, "mh-second": LOCAL}}}
    (inventory / "hosts.yaml").write_text(yaml.safe_dump(hosts, sort_keys=False))
    (inventory / "group_vars").symlink_to(ROOT / "inventory" / "group_vars")
    return inventory


def test_a_job_runs_its_playbook_against_the_lab_s_recorded_hypervisor(
    store, processes, topology, two_hypervisors
):
    lab = "mh-placed"
    # The worker's own default is localhost; the lab is placed on mh-second.
    processes.start("worker", LTB_HYPERVISORS=str(two_hypervisors), LTB_HYPERVISOR="localhost")
    job_id = submit(lab, "remove", topology=topology("pair.lab.yml", lab), hypervisor="mh-second")
    assert lab_row(store, lab).hypervisor == "mh-second"
    job = run_to_end(store, processes, job_id)
    assert job.status == JobStatus.SUCCESSFUL, job.result
    with store() as session:
        events = session.scalars(select(JobEvent).where(JobEvent.job_id == job_id)).all()
    # The lab's own steps (loops over the labs a hypervisor runs) ran on mh-second only.
    # The play runs on every hypervisor; the lab's own steps ran on mh-second and were
    # skipped on localhost (it runs no lab of that name).
    acted_on = {e.host for e in events if e.event == "runner_on_ok"}
    assert acted_on == {"mh-second"}, [(e.host, e.event, e.task) for e in events]


def test_a_reservation_s_lab_is_recorded_on_the_reservation_s_hypervisor(store, topology, redis_db):
    lab = "mh-booked"
    now = utcnow()
    with store.begin() as session:
        reservation = create_reservation(
            session,
            topology("pair.lab.yml", lab),
            now,
            now + timedelta(hours=1),
            hypervisor="mh-second",
        )
        reservation_id = reservation.id
    job_id = begin(reservation_id)
    try:
        assert lab_row(store, lab).hypervisor == "mh-second"
    finally:
        cancel(job_id)


def test_a_lab_that_is_not_removed_cannot_move_to_another_hypervisor(store, topology):
    lab = "mh-stays"
    with store.begin() as session:
        job = request_task(session, lab, "deploy", topology=topology("pair.lab.yml", lab))
        job.started_at = utcnow()
        finish_job(session, job, JobStatus.SUCCESSFUL, {})  # as if deployed on localhost
    assert lab_row(store, lab).state == LabState.RUNNING
    with store.begin() as session, pytest.raises(LabStateError, match="remove it before"):
        request_task(session, lab, "remove", hypervisor="mh-second")
    with store.begin() as session:  # where it runs, its jobs run
        assert request_task(session, lab, "remove", hypervisor="localhost").lab.hypervisor == (
            "localhost"
        )
