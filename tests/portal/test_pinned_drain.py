"""A topology's pin (a node's `hypervisor:` key) does not override a drain (real PostgreSQL,
through the API): a new lab or booking pinned to a draining hypervisor is refused, naming the
pin's place in the topology and the hypervisor; a lab already running there keeps running
and its remove is queued."""

from __future__ import annotations

import secrets
from datetime import timedelta

import pytest
import yaml
from sqlalchemy import delete

from store.models import Lab, LabState, utcnow
from tests.app_config import portal_app
from tests.jobs.conftest import redis_db  # noqa: F401
from tests.portal.conftest import bearer, new_public_template

GIB = 1024**3
PINNED = """\
name: pk-pin
nodes:
  a: {interfaces: {eth1: {}}}
  b: {hypervisor: pk-drained, interfaces: {eth1: {}}}
links:
  - endpoints: [a:eth1, b:eth1]
"""


@pytest.fixture
def app(job_settings, tmp_path, redis_db):  # noqa: F811
    hosts = {
        "pk-open": {"ltb_capacity_cpus": 64, "ltb_capacity_memory": 64 * GIB},
        "pk-drained": {"ltb_capacity_cpus": 64, "ltb_capacity_memory": 64 * GIB, "ltb_drain": True},
    }
    (tmp_path / "hosts.yaml").write_text(yaml.safe_dump({"hypervisors": {"hosts": hosts}}))
    return portal_app(job_settings.database_url, tmp_path, LTB_MAX_RESERVATION_HOURS=8)


@pytest.fixture
def pinned_template(store, make_user):
    return new_public_template(store, make_user("teacher").id, "pk-pin", PINNED)


def refusal_names_the_pin(answer) -> None:
    assert answer.status_code == 409, answer.get_json()
    error = answer.get_json()["error"]
    assert error["message"].startswith("nodes.b.hypervisor: hypervisor pk-drained is draining")
    assert error["detail"]["draining"] == ["pk-drained"]
    assert error["detail"]["problems"] == [
        {"place": "nodes.b.hypervisor", "message": "hypervisor pk-drained is draining"}
    ]


def test_a_lab_started_now_pinned_to_a_draining_hypervisor_is_refused_naming_the_pin(
    client, pinned_template, make_user, token_for
):
    started = client.post(
        "/api/labs", json={"template_id": pinned_template}, headers=bearer(token_for(make_user()))
    )
    refusal_names_the_pin(started)


def test_a_booking_pinned_to_a_draining_hypervisor_is_refused_naming_the_pin(
    client, pinned_template, make_user, token_for
):
    start = utcnow().replace(microsecond=0) + timedelta(days=300_000 + secrets.randbelow(9999))
    body = {
        "template_id": pinned_template,
        "start_at": start.isoformat(),
        "end_at": (start + timedelta(hours=2)).isoformat(),
    }
    booked = client.post("/api/reservations", json=body, headers=bearer(token_for(make_user())))
    refusal_names_the_pin(booked)


def test_a_lab_running_pinned_to_a_draining_hypervisor_is_removed(
    client, make_user, token_for, store
):
    owner = make_user()
    name = f"pk-run-{secrets.token_hex(3)}"
    now = utcnow()
    with store.begin() as session:
        running = Lab(
            name=name,
            owner_id=owner.id,
            topology=PINNED.replace("name: pk-pin", f"name: {name}"),
            state=LabState.RUNNING.value,
            hypervisor="pk-open",
            created_at=now,
            updated_at=now,
        )
        session.add(running)
    try:
        removed = client.delete(f"/api/labs/{running.id}", headers=bearer(token_for(owner)))
        assert removed.status_code == 202, removed.get_json()
        assert removed.get_json()["task"] == "remove"
    finally:  # the queued remove is cancelled by the portal tests' autouse fixture
        with store() as session:
            session.execute(delete(Lab).where(Lab.name == name))
            session.commit()
