"""The running-lab store's records of requested labs and the rules of their tasks."""

from __future__ import annotations

import pytest

from store.labs import (
    LabBusy,
    LabStateError,
    finish_job,
    job_summary,
    lab_summary,
    request_task,
)
from store.models import Job, JobStatus


def test_a_requested_lab_is_recorded_with_its_nodes_links_and_job(store, topology):
    # The portal's views of labs are tested in tests/portal/test_labs.py.
    with store.begin() as session:
        job = request_task(
            session, "job-listed", "deploy", topology=topology("pair.lab.yml", "job-listed")
        )
        job_id = job.id
    with store() as session:
        job = session.get(Job, job_id)
        lab = lab_summary(job.lab)
        assert (lab["name"], lab["state"], lab["owner"]) == ("job-listed", "deploying", None)
        assert [node["name"] for node in lab["nodes"]] == ["a", "b"]
        assert lab["links"] == [{"vlan": 2, "name": "a:eth1--b:eth1"}]
        assert job_summary(job)["lab"] == "job-listed"
        assert (job.task, job.status) == ("deploy", "queued")


def test_a_busy_lab_refuses_a_second_task_and_mirror_needs_a_running_lab(store, topology):
    text = topology("pair.lab.yml", "job-refuses")
    with store.begin() as session:
        job_id = request_task(session, "job-refuses", "deploy", topology=text).id
    with pytest.raises(LabBusy), store.begin() as session:
        request_task(session, "job-refuses", "remove")
    with store.begin() as session:  # the deploy never ran: the lab is as before
        finish_job(session, session.get(Job, job_id), JobStatus.CANCELED, {})
    refused = pytest.raises(LabStateError, match="is removed; mirror needs it running")
    with refused, store.begin() as session:
        request_task(session, "job-refuses", "mirror", params={"endpoint": "a:eth1"})
