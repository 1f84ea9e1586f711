"""Reservations through the API, against the real PostgreSQL and Redis (rq-scheduler): every
refusal names what is wrong before anything is recorded; capacity and quotas hold at every
moment of a booking; moves and cancels take the old edges off rq-scheduler.

The hypervisors' capacity comes from a test inventory written per test: what labs of other
tests of the run hold from now on (they run until removed) plus a small, known amount, so
the numbers here do not depend on what else ran. Each test books in a time of its own,
days ahead, that no other test uses.
"""

from __future__ import annotations

import itertools
import re
import secrets
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from jobs.reservations import scheduled_edges, scheduler
from ltb.topology import parse_lab
from portal.capacity import OverCommitted
from portal.quotas import QuotaExceeded, check_lab_start
from store.capacity import bookings, peak
from store.db import db
from store.models import Reservation, User, utcnow
from tests.app_config import portal_app
from tests.jobs.conftest import redis_db  # noqa: F401
from tests.portal.conftest import bearer, new_public_template

MIB = 1024 * 1024
# Two containers of 1 CPU and 256 MiB each: the lab needs 2 CPUs and 512 MiB.
PAIR = """\
name: p4-pair
nodes:
  a:
    resources: {cpus: 1, memory: 256MiB}
    interfaces:
      eth1: {ipv4: 10.204.1.1/24}
  b:
    resources: {cpus: 1, memory: 256MiB}
    interfaces:
      eth1: {ipv4: 10.204.1.2/24}
links:
  - endpoints: [a:eth1, b:eth1]
"""


@pytest.fixture
def hypervisors(tmp_path, store):
    """hypervisors(free_cpus, free_memory_bytes, around=None): write the test inventory with
    that much room above what the run already holds: at the most in the 8 hours from
    `around`, or (None) what labs that run until removed hold."""
    directory = tmp_path / "inventory"
    (directory / "group_vars").mkdir(parents=True)

    def make(free_cpus: float = 64, free_memory: int = 64 * 1024 * MIB, around=None):
        start = around or utcnow() + timedelta(days=3650)
        end = start + timedelta(hours=8)
        with store() as session:
            held = peak(bookings(session, start, end, now=utcnow()), start, end)
        host = {
            "ansible_connection": "local",
            "ltb_capacity_cpus": held.cpus + free_cpus,
            "ltb_capacity_memory": held.memory_bytes + free_memory,
        }
        (directory / "hosts.yaml").write_text(
            yaml.safe_dump({"hypervisors": {"hosts": {"localhost": host}}})
        )
        return held

    make()
    return make


@pytest.fixture
def app(job_settings, hypervisors, tmp_path, redis_db):  # noqa: F811
    return portal_app(
        job_settings.database_url, tmp_path / "inventory", LTB_MAX_RESERVATION_HOURS=8
    )


@pytest.fixture
def template(store, make_user):
    """A public template of PAIR; returns its id."""
    return new_public_template(store, make_user("teacher").id, "p4-pair", PAIR)


# Weeks of their own for the tests of this module: from a random week 100 to 1100 weeks
# ahead (tests/portal/test_courses.py books within the first 100), one week per test.
_weeks = itertools.count(100 + secrets.randbelow(1000))


@pytest.fixture
def day():
    """Monday 00:00 UTC of a week that no other test of the run books."""
    return _week_from_now()


def _week_from_now() -> datetime:
    today = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    return today + timedelta(weeks=next(_weeks), days=-today.weekday())


def at(base: datetime, hours: float) -> str:
    return (base + timedelta(hours=hours)).isoformat()


def book(client, token, template_id, start, end):
    body = {"template_id": template_id, "start_at": start, "end_at": end}
    return client.post("/api/reservations", json=body, headers=bearer(token))


def edges_of(reservation_id: int) -> set[str]:
    return {edge for rid, edge in scheduled_edges(scheduler()) if rid == reservation_id}


def test_booking_records_its_own_lab_its_needs_and_both_edges_in_rq_scheduler(
    client, make_user, token_for, template, day, store
):
    student = make_user("student")
    answer = book(client, token_for(student), template, at(day, 1), at(day, 3))
    assert answer.status_code == 201, answer.get_json()
    body = answer.get_json()
    assert body["state"] == "scheduled" and body["owner_id"] == student.id
    assert body["lab_name"].startswith("p4-pair-") and body["lab_name"] != "p4-pair"
    assert (body["cpus"], body["memory_bytes"], body["nodes"]) == (2.0, 512 * MIB, 2)
    with store() as session:
        row = session.get(Reservation, body["id"])
        assert f"name: {body['lab_name']}" in row.topology
        assert row.template_version_id is not None
    assert edges_of(body["id"]) == {"begin", "end"}


def test_end_not_after_start_is_refused_naming_end_at(client, make_user, token_for, template, day):
    answer = book(client, token_for(make_user()), template, at(day, 2), at(day, 2))
    assert answer.status_code == 422
    assert "end_at" in answer.get_json()["error"]["detail"]


def test_start_in_the_past_is_refused_naming_start_at(client, make_user, token_for, template):
    past = utcnow() - timedelta(minutes=10)
    answer = book(client, token_for(make_user()), template, at(past, 0), at(past, 1))
    assert answer.status_code == 422
    assert "start_at" in answer.get_json()["error"]["detail"]
    assert "in the past" in answer.get_json()["error"]["message"]


def test_a_time_without_zone_is_refused_naming_the_field(client, make_user, token_for, template):
    answer = book(client, token_for(make_user()), template, "2099-01-01T10:00:00", "now")
    assert answer.status_code == 422
    detail = answer.get_json()["error"]["detail"]["json"]
    assert "start_at" in detail and "end_at" in detail


def test_longer_than_the_maximum_is_refused(client, make_user, token_for, template, day):
    answer = book(client, token_for(make_user()), template, at(day, 0), at(day, 8.5))
    assert answer.status_code == 422
    assert "longer than the maximum of 8 h" in answer.get_json()["error"]["message"]


def test_start_now_books_from_this_moment(client, make_user, token_for, template):
    token = token_for(make_user())
    answer = book(client, token, template, "now", at(utcnow(), 1))
    assert answer.status_code == 201, answer.get_json()
    start = datetime.fromisoformat(answer.get_json()["start_at"])
    assert abs(start - utcnow()) < timedelta(seconds=30)
    # Cancelled before any scheduler starts it: no lab of this test is deployed.
    cancelled = client.delete(f"/api/reservations/{answer.get_json()['id']}", headers=bearer(token))
    assert cancelled.get_json()["state"] == "cancelled"


def test_overlapping_bookings_over_the_cpus_are_refused_naming_the_conflict(
    client, make_user, token_for, template, day, hypervisors
):
    hypervisors(free_cpus=3)
    first = book(client, token_for(make_user()), template, at(day, 0), at(day, 2))
    assert first.status_code == 201, first.get_json()
    # Overlaps the first for one hour: 2 + 2 CPUs of 3 free.
    second = book(client, token_for(make_user()), template, at(day, 1), at(day, 3))
    assert second.status_code == 409
    error = second.get_json()["error"]
    assert "CPU would be over-committed" in error["message"]
    # The conflict is another user's: named only as a count, never by what or whose.
    assert re.search(r"booked by \d+ booking\(s\) of other users\)$", error["message"])
    assert f"reservation {first.get_json()['id']}" not in str(error)
    assert error["detail"]["at"] == at(day, 1)
    # Right after the first one ends there is room.
    after = book(client, token_for(make_user()), template, at(day, 2), at(day, 4))
    assert after.status_code == 201, after.get_json()


def test_overlapping_bookings_over_the_memory_are_refused(
    client, make_user, token_for, template, day, hypervisors
):
    hypervisors(free_memory=768 * MIB)
    assert book(client, token_for(make_user()), template, at(day, 0), at(day, 2)).status_code == 201
    second = book(client, token_for(make_user()), template, at(day, 1), at(day, 2))
    assert second.status_code == 409
    assert second.get_json()["error"]["detail"]["resource"] == "memory"


def test_quota_of_running_labs_refuses_a_second_lab_at_the_same_time(
    client, make_user, token_for, template, day
):
    token = token_for(make_user(quota_running_labs=1))
    assert book(client, token, template, at(day, 0), at(day, 2)).status_code == 201
    answer = book(client, token, template, at(day, 1), at(day, 2))
    assert answer.status_code == 409
    assert answer.get_json()["error"]["detail"]["quota"] == "running labs"
    assert book(client, token, template, at(day, 2), at(day, 3)).status_code == 201


def test_quota_of_reservation_hours_per_week_is_kept(client, make_user, token_for, template):
    token = token_for(make_user(quota_reservation_hours_week=3))
    monday = _week_from_now()
    next(_weeks)  # the week after is this test's too
    assert book(client, token, template, at(monday, 8), at(monday, 10)).status_code == 201
    answer = book(client, token, template, at(monday, 30), at(monday, 32))
    assert answer.status_code == 409
    error = answer.get_json()["error"]
    assert error["detail"]["quota"] == "reservation hours per week"
    assert "week of" in error["message"]
    # The next week has its own hours.
    assert book(client, token, template, at(monday, 200), at(monday, 202)).status_code == 201


def test_move_takes_the_old_edges_off_and_schedules_the_new_ones(
    client, make_user, token_for, template, day
):
    token = token_for(make_user())
    booked = book(client, token, template, at(day, 0), at(day, 1)).get_json()
    moved = client.patch(
        f"/api/reservations/{booked['id']}",
        json={"start_at": at(day, 4), "end_at": at(day, 6)},
        headers=bearer(token),
    )
    assert moved.status_code == 200, moved.get_json()
    assert moved.get_json()["start_at"] == at(day, 4)
    scheduled = {
        edge: when.replace(tzinfo=UTC)
        for job, when in scheduler().get_jobs(with_times=True)
        for rid, edge in [job.meta.get("ltb_reservation", [None, None])]
        if rid == booked["id"]
    }
    assert scheduled == {
        "begin": datetime.fromisoformat(at(day, 4)),
        "end": datetime.fromisoformat(at(day, 6)),
    }


def test_move_into_a_conflict_is_refused_and_keeps_the_old_times(
    client, make_user, token_for, template, day, hypervisors
):
    hypervisors(free_cpus=2)
    other = book(client, token_for(make_user()), template, at(day, 3), at(day, 5))
    assert other.status_code == 201
    token = token_for(make_user())
    mine = book(client, token, template, at(day, 0), at(day, 1)).get_json()
    answer = client.patch(
        f"/api/reservations/{mine['id']}", json={"end_at": at(day, 4)}, headers=bearer(token)
    )
    assert answer.status_code == 409
    message = answer.get_json()["error"]["message"]
    assert re.search(r"booked by \d+ booking\(s\) of other users\)$", message)
    again = client.get(f"/api/reservations/{mine['id']}", headers=bearer(token)).get_json()
    assert again["end_at"] == at(day, 1)
    assert edges_of(mine["id"]) == {"begin", "end"}


def test_cancel_of_a_scheduled_reservation_removes_its_edges_from_rq_scheduler(
    client, make_user, token_for, template, day
):
    token = token_for(make_user())
    booked = book(client, token, template, at(day, 0), at(day, 1)).get_json()
    assert edges_of(booked["id"]) == {"begin", "end"}
    answer = client.delete(f"/api/reservations/{booked['id']}", headers=bearer(token))
    assert answer.status_code == 200
    assert answer.get_json()["state"] == "cancelled"
    assert edges_of(booked["id"]) == set()
    # Its time is free again, and a second cancel says why it does nothing.
    again = client.delete(f"/api/reservations/{booked['id']}", headers=bearer(token))
    assert again.status_code == 409 and "cancelled" in again.get_json()["error"]["message"]


def test_capacity_endpoint_shows_free_cpus_and_memory_per_step(
    client, make_user, token_for, template, day, hypervisors
):
    hypervisors(free_cpus=4, free_memory=2048 * MIB)
    token = token_for(make_user())
    assert book(client, token, template, at(day, 1), at(day, 3)).status_code == 201
    answer = client.get(
        "/api/capacity",
        query_string={"from": at(day, 0), "to": at(day, 4)},
        headers=bearer(token),
    )
    assert answer.status_code == 200, answer.get_json()
    slots = answer.get_json()["slots"]
    assert [s["start"] for s in slots] == [at(day, h) for h in range(4)]
    assert [s["free_cpus"] for s in slots] == [4, 2, 2, 4]
    assert [s["free_memory_bytes"] for s in slots] == [
        2048 * MIB,
        1536 * MIB,
        1536 * MIB,
        2048 * MIB,
    ]
    assert answer.get_json()["step_seconds"] == 3600


def test_capacity_range_is_bounded(client, make_user, token_for, day):
    answer = client.get(
        "/api/capacity",
        query_string={"from": at(day, 0), "to": at(day, 24 * 40)},
        headers=bearer(token_for(make_user())),
    )
    assert answer.status_code == 422 and "to" in answer.get_json()["error"]["detail"]


def test_a_reservation_is_seen_by_its_owner_and_admins_only(
    client, make_user, token_for, template, day
):
    owner, other, admin = make_user(), make_user(), make_user("admin")
    booked = book(client, token_for(owner), template, at(day, 0), at(day, 1)).get_json()
    url = f"/api/reservations/{booked['id']}"
    stranger = bearer(token_for(other))
    assert client.get(url, headers=stranger).status_code == 404
    assert client.patch(url, json={"end_at": at(day, 2)}, headers=stranger).status_code == 404
    assert client.delete(url, headers=stranger).status_code == 404
    assert client.get(url).status_code == 401
    listed = client.get("/api/reservations", headers=stranger).get_json()
    assert booked["id"] not in [r["id"] for r in listed["items"]]
    assert client.get(url, headers=bearer(token_for(admin))).status_code == 200
    mine = client.get("/api/reservations", headers=bearer(token_for(owner))).get_json()
    assert [r["id"] for r in mine["items"]] == [booked["id"]]


def test_a_lab_started_now_is_held_to_the_quotas_and_the_capacity(app, make_user, hypervisors):
    lab = parse_lab(PAIR)
    with app.app_context():
        capped = db.session.get(User, make_user(quota_nodes=1).id)
        with pytest.raises(QuotaExceeded, match="quota of nodes"):
            check_lab_start(capped, lab)
        hypervisors(free_cpus=1.5, around=utcnow())
        with pytest.raises(OverCommitted, match="CPU would be over-committed"):
            check_lab_start(db.session.get(User, make_user().id), lab)
        hypervisors(free_cpus=2, around=utcnow())
        check_lab_start(db.session.get(User, make_user().id), lab)
