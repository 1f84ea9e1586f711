"""The portal application over the running-lab store."""

from __future__ import annotations

import pytest

from portal import create_app
from store.labs import LabBusy, LabStateError, finish_job, request_task
from store.models import Job, JobStatus


@pytest.fixture
def client(job_settings):
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": job_settings.database_url})
    return app.test_client()


def test_a_requested_lab_is_listed_with_its_nodes_links_and_job(client, store, topology):
    with store.begin() as session:
        job = request_task(
            session, "job-listed", "deploy", topology=topology("pair.lab.yml", "job-listed")
        )
        job_id = job.id

    assert {"name": "job-listed", "state": "deploying", "owner": None} in client.get(
        "/api/labs"
    ).json
    lab = client.get("/api/labs/job-listed").json
    assert [node["name"] for node in lab["nodes"]] == ["a", "b"]
    assert lab["links"] == [{"vlan": 2, "name": "a:eth1--b:eth1"}]
    assert [(j["id"], j["task"], j["status"]) for j in lab["jobs"]] == [
        (job_id, "deploy", "queued")
    ]
    assert client.get(f"/api/jobs/{job_id}").json["lab"] == "job-listed"
    assert client.get("/api/labs/job-absent").status_code == 404


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
