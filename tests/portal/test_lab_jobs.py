"""A lab's jobs through the API and on its page, a page at a time, latest first; neither reads
every job the lab ever had (a lab may have thousands). Against the real PostgreSQL: the jobs
are recorded in the store (no worker runs them)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import event

from store.db import db
from store.labs import finish_job, request_task
from store.models import JobStatus
from tests.portal.conftest import bearer

JOBS = 25
PAIR = "name: NAME\nnodes:\n  a: {}\n  b: {}\n"


@pytest.fixture
def lab_with_jobs(store, make_user):
    """A lab of a student with JOBS ended jobs: (lab id, owner, job ids oldest first)."""
    owner = make_user("student")
    name = f"pe-{uuid.uuid4().hex[:8]}"
    ids = []
    with store.begin() as session:
        for number in range(JOBS):
            job = request_task(
                session,
                name,
                "remove" if number else "deploy",
                topology=PAIR.replace("NAME", name) if number == 0 else None,
                owner_id=owner.id,
            )
            finish_job(session, job, JobStatus.FAILED, {"error": "pe: never ran"})
            session.flush()
            ids.append(job.id)
        lab_id = job.lab_id
    return lab_id, owner, ids


def test_the_api_lists_a_labs_jobs_latest_first_a_page_at_a_time(
    client, lab_with_jobs, token_for, make_user
):
    lab_id, owner, ids = lab_with_jobs
    headers = bearer(token_for(owner))
    first = client.get(f"/api/labs/{lab_id}/jobs?per_page=10", headers=headers).get_json()
    assert (first["total"], first["page"], first["per_page"]) == (JOBS, 1, 10)
    assert [job["id"] for job in first["items"]] == ids[::-1][:10]
    last = client.get(f"/api/labs/{lab_id}/jobs?page=3&per_page=10", headers=headers).get_json()
    assert [job["id"] for job in last["items"]] == ids[::-1][20:]
    assert client.get(f"/api/labs/{lab_id}", headers=headers).get_json()["job"]["id"] == ids[-1]
    too_many = client.get(f"/api/labs/{lab_id}/jobs?per_page=101", headers=headers)
    assert too_many.status_code == 422 and "per_page" in str(too_many.get_json())
    other = bearer(token_for(make_user("student")))
    assert client.get(f"/api/labs/{lab_id}/jobs", headers=other).status_code == 404


def test_the_lab_page_shows_one_page_of_jobs_and_reads_no_more(app, client, lab_with_jobs, login):
    lab_id, owner, ids = lab_with_jobs
    login(client, owner)
    rows_read: list[int] = []

    def count_job_rows(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and "FROM jobs" in statement:
            rows_read.append(cursor.rowcount)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "after_cursor_execute", count_job_rows)
    try:
        html = client.get(f"/labs/{lab_id}?page=2&per_page=10").get_data(as_text=True)
        listed = client.get("/api/labs").get_json()
    finally:
        event.remove(engine, "after_cursor_execute", count_job_rows)
    assert "Page 2 of 3" in html and "Later jobs" in html and "Earlier jobs" in html
    assert html.count("<td>remove</td>") == 10
    assert listed["items"][0]["job"]["id"] == ids[-1]
    assert rows_read and max(rows_read) <= 10, rows_read
