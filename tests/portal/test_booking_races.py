"""Quotas and capacity hold when requests race: two bookings or lab starts at once, against the
real PostgreSQL, cannot both pass when only one fits (store.capacity.lock_bookings serialises
check and insert).

Each racing request is a thread with its own test client. The check of capacity is slowed
by half a second (it still runs, unchanged), so without the lock both requests would have
checked before either recorded anything: each of these tests fails when the lock is gone.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

import portal.quotas
import portal.reservations
from jobs.queue import cancel
from store.models import Role, utcnow
from tests.jobs.conftest import redis_db  # noqa: F401
from tests.portal.conftest import bearer
from tests.portal.test_reservations import app, hypervisors, template  # noqa: F401

RACE_WINDOW = 0.5


@pytest.fixture
def slow_capacity_check(monkeypatch):
    """The capacity check of lab starts and bookings, followed by RACE_WINDOW of sleep."""

    def slowed(check: Callable) -> Callable:
        def check_then_wait(*args, **kwargs):
            answer = check(*args, **kwargs)
            time.sleep(RACE_WINDOW)
            return answer

        return check_then_wait

    # Lab starts and bookings are placed (portal.capacity.place, spread where needed).
    monkeypatch.setattr(portal.quotas, "place", slowed(portal.quotas.place))
    monkeypatch.setattr(portal.reservations, "place", slowed(portal.reservations.place))


def at_once(flask_app, requests: list[tuple[str, str, dict, dict]]) -> list:
    """Send (method, path, json, headers) requests from one thread each, all at once;
    return the answers in the same order."""
    answers: list = [None] * len(requests)
    start = threading.Barrier(len(requests))

    def send(index: int, method: str, path: str, body: dict, headers: dict) -> None:
        client = flask_app.test_client()
        start.wait()
        answers[index] = client.open(path, method=method, json=body, headers=headers)

    threads = [
        threading.Thread(target=send, args=(index, *request))
        for index, request in enumerate(requests)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return answers


def slot_of_its_own() -> tuple[str, str]:
    """Two hours on a day years ahead that no other test books."""
    start = utcnow().replace(minute=0, second=0, microsecond=0) + timedelta(
        days=30_000 + secrets.randbelow(100_000)
    )
    return start.isoformat(), (start + timedelta(hours=2)).isoformat()


def statuses(answers: list) -> list[int]:
    return sorted(answer.status_code for answer in answers)


def test_two_lab_starts_at_once_cannot_both_pass_a_quota_of_one_running_lab(
    app,  # noqa: F811
    template,  # noqa: F811
    make_user,
    token_for,
    slow_capacity_check,
):
    headers = bearer(token_for(make_user(quota_running_labs=1)))
    request = ("POST", "/api/labs", {"template_id": template}, headers)
    answers = at_once(app, [request, request])
    try:
        assert statuses(answers) == [202, 409], [a.get_json() for a in answers]
        refused = next(a for a in answers if a.status_code == 409).get_json()["error"]
        assert "quota of running labs" in refused["message"], refused
    finally:
        for answer in answers:
            if answer is not None and answer.status_code == 202:
                cancel(answer.get_json()["job"]["id"])


def test_two_bookings_at_once_cannot_both_pass_a_quota_of_one_running_lab(
    app,  # noqa: F811
    template,  # noqa: F811
    make_user,
    token_for,
    slow_capacity_check,
):
    headers = bearer(token_for(make_user(quota_running_labs=1)))
    start_at, end_at = slot_of_its_own()
    body = {"template_id": template, "start_at": start_at, "end_at": end_at}
    answers = at_once(app, [("POST", "/api/reservations", body, headers)] * 2)
    assert statuses(answers) == [201, 409], [a.get_json() for a in answers]
    refused = next(a for a in answers if a.status_code == 409).get_json()["error"]
    assert "quota of running labs" in refused["message"], refused


def test_two_users_booking_the_last_room_at_once_cannot_both_get_it(
    app,  # noqa: F811
    template,  # noqa: F811
    hypervisors,  # noqa: F811
    make_user,
    token_for,
    slow_capacity_check,
):
    start_at, end_at = slot_of_its_own()
    # Room for one lab of the template (2 CPUs) in that slot, not two.

    hypervisors(free_cpus=3, around=datetime.fromisoformat(start_at))
    body = {"template_id": template, "start_at": start_at, "end_at": end_at}
    first, second = (bearer(token_for(make_user(Role.STUDENT))) for _ in range(2))
    answers = at_once(
        app,
        [("POST", "/api/reservations", body, first), ("POST", "/api/reservations", body, second)],
    )
    assert statuses(answers) == [201, 409], [a.get_json() for a in answers]
    refused = next(a for a in answers if a.status_code == 409).get_json()["error"]
    assert "CPU would be over-committed" in refused["message"], refused
