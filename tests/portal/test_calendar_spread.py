"""The calendar says what placement does when a lab may be spread (real PostgreSQL, through
the API and the page): each step has the largest lab one hypervisor still fits and what the
hypervisors that take new labs have free together; a booking larger than one hypervisor but
within the sum is placed (spread), and the page says what each number means."""

from __future__ import annotations

import re
import secrets
from datetime import timedelta

import pytest
import yaml

from store.models import utcnow
from tests.app_config import portal_app
from tests.jobs.conftest import redis_db  # noqa: F401
from tests.portal.conftest import bearer, new_public_template

GIB = 1024**3
# Three linked containers of 2 CPUs and 1 GiB: 6 CPUs, more than one hypervisor's 4.
TRIO = """\
name: pk-trio
nodes:
  a: {resources: {cpus: 2, memory: 1GiB}, interfaces: {eth1: {}}}
  b: {resources: {cpus: 2, memory: 1GiB}, interfaces: {eth1: {}, eth2: {}}}
  c: {resources: {cpus: 2, memory: 1GiB}, interfaces: {eth1: {}}}
links:
  - endpoints: [a:eth1, b:eth1]
  - endpoints: [b:eth2, c:eth1]
"""


@pytest.fixture
def app(job_settings, tmp_path, redis_db):  # noqa: F811
    hosts = {
        name: {"ltb_capacity_cpus": 4, "ltb_capacity_memory": 8 * GIB}
        for name in ("pk-cal-a", "pk-cal-b")
    }
    (tmp_path / "hosts.yaml").write_text(yaml.safe_dump({"hypervisors": {"hosts": hosts}}))
    return portal_app(job_settings.database_url, tmp_path, LTB_MAX_RESERVATION_HOURS=8)


@pytest.fixture
def trio(store, make_user):
    return new_public_template(store, make_user("teacher").id, "pk-trio", TRIO)


def test_the_calendar_says_one_hypervisor_s_room_and_what_fits_spread(
    client, trio, make_user, token_for, login
):
    # A Monday 00:00 years ahead that no other test books (and no lab holds: labs of the run
    # are on "localhost", not in this inventory).
    today = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    monday = today + timedelta(weeks=3000 + secrets.randbelow(9000), days=-today.weekday())
    user = make_user()
    headers = bearer(token_for(user))

    def slots() -> list[dict]:
        query = {"from": monday.isoformat(), "to": (monday + timedelta(hours=2)).isoformat()}
        answer = client.get("/api/capacity", query_string=query, headers=headers)
        assert answer.status_code == 200, answer.get_json()
        return answer.get_json()["slots"]

    free = slots()
    assert [(s["free_cpus"], s["spread_cpus"]) for s in free] == [(4, 8), (4, 8)]
    assert [s["spread_memory_bytes"] for s in free] == [16 * GIB, 16 * GIB]

    # 6 CPUs: more than one hypervisor has, within the sum: placed, spread.
    body = {
        "template_id": trio,
        "start_at": monday.isoformat(),
        "end_at": (monday + timedelta(hours=1)).isoformat(),
    }
    booked = client.post("/api/reservations", json=body, headers=headers)
    assert booked.status_code == 201, booked.get_json()
    # a and b on one hypervisor (4 CPUs), c on the other: 2 CPUs and 7 GiB there, and 6 GiB
    # more beside a and b, which only a spread lab's memory-only nodes may use.
    after = slots()
    assert [(s["free_cpus"], s["spread_cpus"]) for s in after] == [(2, 2), (4, 8)]
    assert [s["spread_memory_bytes"] for s in after] == [13 * GIB, 16 * GIB]

    login(client, user)
    page = client.get(f"/reservations?week={monday.date().isoformat()}").get_data(as_text=True)
    words = " ".join(re.sub(r"<[^>]+>", " ", page).split())  # the page's text
    assert "the largest lab that still fits on one hypervisor" in words
    assert "how large a lab spread over them may be (each of its nodes must fit" in words
    assert "spread: 8 CPUs · 16.0 GiB" in words  # the free hours
    assert "2 CPUs · 7.0 GiB spread: 2 CPUs · 13.0 GiB" in words  # the booked hour
    client.delete(f"/api/reservations/{booked.get_json()['id']}", headers=headers)
