"""Courses through the API, against the real PostgreSQL and Redis: every student gets their
own reservation of the course's slot and sees only it; the teacher sees all of them and
resets their labs; a course that does not fit is not recorded at all."""

from __future__ import annotations

import itertools
import secrets
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from jobs.reservations import begin, held_edges, reset, scheduler
from store.models import Course, Job, Lab, Reservation, ReservationState, utcnow
from tests.jobs.conftest import redis_db  # noqa: F401
from tests.portal import test_reservations as booking
from tests.portal.conftest import bearer

# The application with a test inventory, its capacity, and a template: as for reservations.
app, hypervisors, template = booking.app, booking.hypervisors, booking.template

# Weeks of their own: 2 to 99 weeks ahead (test_reservations.py books from week 100 on).
_weeks = itertools.count(2 + secrets.randbelow(60))


@pytest.fixture
def week() -> datetime:
    today = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    return today + timedelta(weeks=next(_weeks), days=-today.weekday())


def at(base: datetime, hours: float) -> str:
    return (base + timedelta(hours=hours)).isoformat()


def new_course(client, token, template_id, week, students, **extra):
    body = {
        "name": "p4 networks 101",
        "template_id": template_id,
        "start_at": at(week, 9),
        "end_at": at(week, 11),
        "students": students,
        **extra,
    }
    return client.post("/api/courses", json=body, headers=bearer(token))


@pytest.fixture
def course(client, make_user, token_for, template, week):
    """A course of a teacher for two students: (course json, teacher, [ann, bob])."""
    teacher = make_user("teacher")
    students = [make_user("student"), make_user("student")]
    answer = new_course(client, token_for(teacher), template, week, [s.username for s in students])
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json(), teacher, students


def test_every_student_gets_their_own_reservation_owned_by_them(course, store):
    body, _, students = course
    entries = {entry["user_id"]: entry for entry in body["students"]}
    assert set(entries) == {s.id for s in students}
    names = set()
    for student in students:
        reservation = entries[student.id]["reservation"]
        assert reservation["owner_id"] == student.id
        assert reservation["course_id"] == body["id"]
        assert reservation["state"] == "scheduled"
        names.add(reservation["lab_name"])
    assert len(names) == 2  # a lab each


def test_each_student_sees_only_their_own_reservation_and_entry(client, course, token_for):
    body, _, (ann, bob) = course
    by_user = {e["user_id"]: e["reservation"]["id"] for e in body["students"]}
    ann_token = bearer(token_for(ann))
    assert client.get(f"/api/reservations/{by_user[ann.id]}", headers=ann_token).status_code == 200
    assert client.get(f"/api/reservations/{by_user[bob.id]}", headers=ann_token).status_code == 404
    seen = client.get(f"/api/courses/{body['id']}", headers=ann_token).get_json()
    assert [e["user_id"] for e in seen["students"]] == [ann.id]
    assert seen["join_code"] is None
    listed = client.get("/api/reservations", headers=ann_token).get_json()["items"]
    assert [r["id"] for r in listed] == [by_user[ann.id]]


def test_the_teacher_sees_every_student_and_their_reservations(client, course, token_for):
    body, teacher, students = course
    token = bearer(token_for(teacher))
    seen = client.get(f"/api/courses/{body['id']}", headers=token).get_json()
    assert {e["user_id"] for e in seen["students"]} == {s.id for s in students}
    listed = client.get("/api/reservations", headers=token).get_json()["items"]
    assert {r["owner_id"] for r in listed} == {s.id for s in students}
    for entry in seen["students"]:
        url = f"/api/reservations/{entry['reservation']['id']}"
        assert client.get(url, headers=token).status_code == 200


def test_a_student_of_another_course_sees_nothing_of_it(
    client,
    course,
    make_user,
    token_for,
    template,
):
    body, _, students = course
    other_teacher, outsider = make_user("teacher"), make_user("student")
    later = utcnow() + timedelta(weeks=1)  # another slot; its capacity is not in question
    other = new_course(client, token_for(other_teacher), template, later, [outsider.username])
    assert other.status_code == 201, other.get_json()
    for token in (token_for(outsider), token_for(other_teacher)):
        assert client.get(f"/api/courses/{body['id']}", headers=bearer(token)).status_code == 404
        for entry in body["students"]:
            url = f"/api/reservations/{entry['reservation']['id']}"
            assert client.get(url, headers=bearer(token)).status_code == 404
        url = f"/api/courses/{body['id']}/students/{students[0].id}/reset"
        assert client.post(url, headers=bearer(token)).status_code in (403, 404)
    listed = client.get("/api/courses", headers=bearer(token_for(outsider))).get_json()
    assert [c["id"] for c in listed["items"]] == [other.get_json()["id"]]


def test_students_may_not_create_courses(client, make_user, token_for, template, week):
    student = make_user("student")
    answer = new_course(client, token_for(student), template, week, [])
    assert answer.status_code == 403


def test_unknown_students_are_refused_by_name_and_nothing_is_recorded(
    client,
    make_user,
    token_for,
    template,
    week,
    store,
):
    teacher, known = make_user("teacher"), make_user("student")
    answer = new_course(client, token_for(teacher), template, week, [known.username, "p4-nobody"])
    assert answer.status_code == 422
    assert "p4-nobody" in answer.get_json()["error"]["message"]
    with store() as session:
        assert session.query(Course).filter_by(teacher_id=teacher.id).count() == 0
        assert session.query(Reservation).filter_by(owner_id=known.id).count() == 0


def test_a_course_over_capacity_names_the_student_and_records_nothing(
    client,
    make_user,
    token_for,
    template,
    week,
    hypervisors,
    store,
):
    hypervisors(free_cpus=3)  # room for one lab of 2 CPUs, not two
    teacher, ann, bob = make_user("teacher"), make_user(), make_user()
    answer = new_course(client, token_for(teacher), template, week, [ann.username, bob.username])
    assert answer.status_code == 409
    error = answer.get_json()["error"]
    assert error["detail"]["student"] == bob.username
    assert "CPU would be over-committed" in error["message"]
    with store() as session:
        assert session.query(Reservation).filter_by(owner_id=ann.id).count() == 0
        assert session.query(Course).filter_by(teacher_id=teacher.id).count() == 0


def test_a_student_joins_with_the_code_and_gets_the_slot(
    client,
    make_user,
    token_for,
    template,
    week,
):
    teacher, student = make_user("teacher"), make_user()
    created = new_course(client, token_for(teacher), template, week, [], join_code=True)
    code = created.get_json()["join_code"]
    assert code
    token = bearer(token_for(student))
    joined = client.post("/api/courses/join", json={"code": code}, headers=token)
    assert joined.status_code == 201, joined.get_json()
    (entry,) = joined.get_json()["students"]
    assert entry["user_id"] == student.id
    assert entry["reservation"]["start_at"] == at(week, 9)
    again = client.post("/api/courses/join", json={"code": code}, headers=token)
    assert again.status_code == 409
    wrong = client.post("/api/courses/join", json={"code": "p4-wrong"}, headers=token)
    assert wrong.status_code == 404


def test_reset_queues_remove_then_deploy_for_a_started_lab_only(client, course, token_for, store):
    body, teacher, (ann, bob) = course
    by_user = {e["user_id"]: e["reservation"]["id"] for e in body["students"]}
    with store() as session:  # ann's reservation has begun (no lab is deployed by this test)
        session.get(Reservation, by_user[ann.id]).state = ReservationState.STARTED.value
        session.commit()
    token = bearer(token_for(teacher))
    url = f"/api/courses/{body['id']}/students/{{}}/reset"
    answer = client.post(url.format(ann.id), headers=token)
    assert answer.status_code == 202, answer.get_json()
    assert (by_user[ann.id], "reset") in held_edges(scheduler())
    assert client.post(url.format(bob.id), headers=token).status_code == 409
    everyone = client.post(f"/api/courses/{body['id']}/reset", headers=token).get_json()
    assert everyone == {"reset": [ann.id], "not_running": [bob.id]}
    # A student may not reset, even their own lab.
    own = client.post(url.format(ann.id), headers=bearer(token_for(ann)))
    assert own.status_code == 403


def test_begin_gives_the_lab_its_student_template_version_and_course(course, store):
    body, _, (ann, _bob) = course
    entry = next(e for e in body["students"] if e["user_id"] == ann.id)
    reservation_id = entry["reservation"]["id"]
    with store() as session:  # its start has come (moved here, no scheduler runs)
        session.get(Reservation, reservation_id).start_at = utcnow()
        session.commit()
    job_id = begin(reservation_id)  # records the deploy; no worker runs it here
    with store() as session:
        lab = session.scalars(select(Lab).where(Lab.name == entry["reservation"]["lab_name"])).one()
        assert (lab.owner_id, lab.course_id) == (ann.id, body["id"])
        assert lab.template_version_id == body["template_version_id"]
        assert session.get(Job, job_id).task == "deploy"
        assert session.get(Reservation, reservation_id).state == "started"


def test_reset_removes_then_deploys_again_from_the_same_topology(course, store):
    body, _, (ann, _bob) = course
    entry = next(e for e in body["students"] if e["user_id"] == ann.id)
    reservation_id, lab_name = entry["reservation"]["id"], entry["reservation"]["lab_name"]
    with store() as session:
        session.get(Reservation, reservation_id).start_at = utcnow()
        session.commit()
    first_deploy = begin(reservation_id)
    with store() as session:  # as if the deploy had run
        session.get(Job, first_deploy).status = "successful"
        session.scalars(select(Lab).where(Lab.name == lab_name)).one().state = "running"
        session.commit()
    assert reset(reservation_id, "remove") == "removing"
    # The deploy step waits while the remove is still to run.
    assert reset(reservation_id, "deploy") == "lab busy: retry scheduled"
    with store() as session:
        remove = session.scalars(select(Job).where(Job.task == "remove")).all()
        remove = next(job for job in remove if job.lab.name == lab_name)
        remove.status = "successful"
        remove.lab.state = "removed"
        session.commit()
    redeploy = reset(reservation_id, "deploy")
    with store() as session:
        job = session.get(Job, redeploy)
        assert job.task == "deploy" and job.lab.name == lab_name
        assert job.lab.topology == session.get(Reservation, reservation_id).topology
        assert session.get(Reservation, reservation_id).deploy_job_id == redeploy
