"""Changing a course through the API, against the real PostgreSQL and Redis (rq-scheduler): a
new name, template or time slot moves every student's reservation (and its edges) or none,
and a refusal names the student; students are added (booked like one who joins) and
removed (their reservation cancelled or ended, their labs of the course removed)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from jobs.queue import cancel
from jobs.reservations import META_KEY, begin, scheduler
from store.labs import finish_job, request_task
from store.models import JobStatus, Lab, Reservation, utcnow
from tests.jobs.conftest import redis_db  # noqa: F401
from tests.portal import test_courses as courses
from tests.portal.conftest import bearer, new_public_template

app, hypervisors, template = courses.app, courses.hypervisors, courses.template
week, course, at = courses.week, courses.course, courses.at


def reservations_of(store, course_id: int) -> dict[int, Reservation]:
    """The course's reservations by student id."""
    with store() as session:
        rows = session.scalars(select(Reservation).where(Reservation.course_id == course_id))
        return {row.owner_id: row for row in rows}


def edge_times(reservation_id: int) -> dict[str, datetime]:
    """When rq-scheduler runs the reservation's begin and end."""
    times = {}
    for job, when in scheduler().get_jobs(with_times=True):
        mark = job.meta.get(META_KEY)
        if mark and mark[0] == reservation_id:
            times[mark[1]] = when.replace(tzinfo=UTC)
    return times


@pytest.fixture
def other_template(store, make_user):
    """A second public template (one node); returns its id."""
    topology = "name: pe-single\nnodes:\n  solo: {}\n"
    return new_public_template(store, make_user("teacher").id, "pe-single", topology)


def test_moving_the_slot_moves_every_students_reservation_and_its_edges(
    client, course, token_for, store, week
):
    body, teacher, students = course
    answer = client.patch(
        f"/api/courses/{body['id']}",
        json={"name": "pe moved", "start_at": at(week, 33), "end_at": at(week, 35)},
        headers=bearer(token_for(teacher)),
    )
    assert answer.status_code == 200, answer.get_json()
    changed = answer.get_json()
    assert (changed["name"], changed["start_at"], changed["end_at"]) == (
        "pe moved",
        at(week, 33),
        at(week, 35),
    )
    moved = reservations_of(store, body["id"])
    assert set(moved) == {s.id for s in students}
    for reservation in moved.values():
        assert reservation.start_at.isoformat() == at(week, 33)
        assert reservation.end_at.isoformat() == at(week, 35)
        edges = edge_times(reservation.id)
        assert edges == {"begin": reservation.start_at, "end": reservation.end_at}, edges


def test_a_slot_that_one_student_cannot_take_moves_nobody_and_names_them(
    client, make_user, token_for, template, week, store
):
    teacher, ann = make_user("teacher"), make_user("student")
    bob = make_user("student", quota_reservation_hours_week=3)
    made = courses.new_course(
        client, token_for(teacher), template, week, [ann.username, bob.username]
    )
    assert made.status_code == 201, made.get_json()
    course_id = made.get_json()["id"]
    before = {owner: r.end_at for owner, r in reservations_of(store, course_id).items()}
    longer = client.patch(
        f"/api/courses/{course_id}",
        json={"end_at": at(week, 13)},  # 4 hours: over bob's 3 hours a week
        headers=bearer(token_for(teacher)),
    )
    assert longer.status_code == 409, longer.get_json()
    error = longer.get_json()["error"]
    assert bob.username in error["message"] and "reservation hours" in error["message"]
    assert error["detail"]["student"] == bob.username
    after = {owner: r.end_at for owner, r in reservations_of(store, course_id).items()}
    assert after == before
    shown = client.get(f"/api/courses/{course_id}", headers=bearer(token_for(teacher)))
    assert shown.get_json()["end_at"] == at(week, 11)


def test_a_new_template_goes_to_reservations_still_to_start_under_their_lab_names(
    client, course, token_for, store, other_template
):
    body, teacher, _ = course
    before = reservations_of(store, body["id"])
    answer = client.patch(
        f"/api/courses/{body['id']}",
        json={"template_id": other_template},
        headers=bearer(token_for(teacher)),
    )
    assert answer.status_code == 200, answer.get_json()
    version = answer.get_json()["template_version_id"]
    assert version != body["template_version_id"]
    for owner, reservation in reservations_of(store, body["id"]).items():
        assert reservation.template_version_id == version
        assert reservation.lab_name == before[owner].lab_name
        assert f"name: {reservation.lab_name}" in reservation.topology
        assert "solo" in reservation.topology and reservation.nodes == 1


def test_a_started_lab_keeps_its_start_so_the_start_cannot_move_but_the_end_can(
    client, make_user, token_for, template, store
):
    teacher, ann = make_user("teacher"), make_user("student")
    now = utcnow().replace(microsecond=0)
    made = courses.new_course(
        client, token_for(teacher), template, now, [ann.username], start_at="now", end_at=at(now, 2)
    )
    assert made.status_code == 201, made.get_json()
    course_id = made.get_json()["id"]
    reservation = reservations_of(store, course_id)[ann.id]
    deploy = begin(reservation.id)  # records the deploy; no worker runs it here
    cancel(deploy)
    token = bearer(token_for(teacher))
    try:
        later = client.patch(
            f"/api/courses/{course_id}",
            json={"start_at": at(now, 1), "end_at": at(now, 3)},
            headers=token,
        )
        assert later.status_code == 409, later.get_json()
        assert ann.username in later.get_json()["error"]["message"]
        assert "start_at" in later.get_json()["error"]["detail"]
        longer = client.patch(
            f"/api/courses/{course_id}", json={"end_at": at(now, 3)}, headers=token
        )
        assert longer.status_code == 200, longer.get_json()
        moved = reservations_of(store, course_id)[ann.id]
        assert (moved.start_at, moved.end_at.isoformat()) == (reservation.start_at, at(now, 3))
        assert edge_times(reservation.id)["end"] == moved.end_at
    finally:
        # Removing the student ends the reservation now and removes its lab.
        gone = client.delete(f"/api/courses/{course_id}/students/{ann.id}", headers=token)
        assert gone.status_code == 200, gone.get_json()
        ended = reservations_of(store, course_id)[ann.id]
        assert ended.state == "ended" and ended.remove_job_id
        with store() as session:
            lab = session.scalars(select(Lab).where(Lab.name == ended.lab_name)).one()
            assert lab.state == "removing"
        cancel(ended.remove_job_id)


def test_added_students_get_the_slot_and_known_ones_are_refused(
    client, course, make_user, token_for, store
):
    body, teacher, (ann, _) = course
    token = bearer(token_for(teacher))
    url = f"/api/courses/{body['id']}/students"
    carl = make_user("student")
    added = client.post(url, json={"students": [carl.username]}, headers=token)
    assert added.status_code == 201, added.get_json()
    entry = next(e for e in added.get_json()["students"] if e["user_id"] == carl.id)
    assert entry["reservation"]["start_at"] == body["start_at"]
    assert entry["reservation"]["owner_id"] == carl.id
    again = client.post(url, json={"students": [ann.username]}, headers=token)
    assert again.status_code == 409 and ann.username in again.get_json()["error"]["message"]
    unknown = client.post(url, json={"students": ["pe-nobody"]}, headers=token)
    assert unknown.status_code == 422 and "pe-nobody" in unknown.get_json()["error"]["message"]
    by_student = client.post(
        url, json={"students": [carl.username]}, headers=bearer(token_for(ann))
    )
    assert by_student.status_code == 403


def test_a_removed_student_loses_their_reservation_and_their_labs_of_the_course(
    client, course, token_for, store
):
    body, teacher, (ann, bob) = course
    # A lab of ann's in the course outside the reservation, recorded as running.
    extra = f"pe-{uuid.uuid4().hex[:8]}"
    with store.begin() as session:
        job = request_task(
            session,
            extra,
            "deploy",
            topology=f"name: {extra}\nnodes:\n  solo: {{}}\n",
            owner_id=ann.id,
            course_id=body["id"],
        )
        job.started_at = utcnow()  # as if a worker had run it
        finish_job(session, job, JobStatus.SUCCESSFUL, {})
    token = bearer(token_for(teacher))
    gone = client.delete(f"/api/courses/{body['id']}/students/{ann.id}", headers=token)
    assert gone.status_code == 200, gone.get_json()
    assert [e["user_id"] for e in gone.get_json()["students"]] == [bob.id]
    reservations = reservations_of(store, body["id"])
    assert reservations[ann.id].state == "cancelled"
    assert reservations[bob.id].state == "scheduled"
    assert edge_times(reservations[ann.id].id) == {}
    with store() as session:
        lab = session.scalars(select(Lab).where(Lab.name == extra)).one()
        assert lab.state == "removing"
        removal = lab.jobs[-1]
    cancel(removal.id)
    # Ann no longer sees the course; removing her again finds no such student.
    assert (
        client.get(f"/api/courses/{body['id']}", headers=bearer(token_for(ann))).status_code == 404
    )
    again = client.delete(f"/api/courses/{body['id']}/students/{ann.id}", headers=token)
    assert again.status_code == 404
