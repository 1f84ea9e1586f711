"""Capacity per hypervisor through the API (real PostgreSQL): a lab that no one hypervisor
has room for is spread over several, each node recorded where it runs, and room that even
spread does not fit is refused, naming the moment and what each has free; the calendar shows
the largest lab that still fits; a started lab and a booking record the hypervisor their
placement chose; a draining hypervisor takes no new lab or booking, keeps those placed on
it, and the admin's page says it drains."""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timedelta
from html import unescape

import pytest
import yaml
from sqlalchemy import delete

from jobs.queue import cancel
from portal.ui.admin import hypervisors_now
from store.models import Lab, LabState, Reservation, ReservationState, Role, utcnow
from tests.app_config import portal_app
from tests.jobs.conftest import redis_db  # noqa: F401
from tests.portal.conftest import bearer
from tests.portal.test_reservations import PAIR, template  # noqa: F401

GIB = 1024**3


@pytest.fixture
def inventory(tmp_path):
    """inventory({host: cpus}) -> an app whose hypervisors are these (8 GiB each)."""

    def make(cpus: dict[str, float], draining: tuple[str, ...] = ()):
        hosts = {
            host: {"ltb_capacity_cpus": count, "ltb_capacity_memory": 8 * GIB}
            | ({"ltb_drain": True} if host in draining else {})
            for host, count in cpus.items()
        }
        (tmp_path / "hosts.yaml").write_text(
            yaml.safe_dump({"hypervisors": {"hosts": hosts}}, sort_keys=False)
        )

    return make


@pytest.fixture
def app(job_settings, tmp_path, redis_db):  # noqa: F811
    return portal_app(job_settings.database_url, tmp_path, LTB_MAX_RESERVATION_HOURS=8)


def row_of(page: str, hypervisor: str) -> list[str]:
    """The texts of the hypervisor's row of the admin's page: its name and notes, then each
    cell."""
    for row in re.findall(r"<tr id=\"hypervisor-\d+\">(.*?)</tr>", page, re.S):
        cells = [
            " ".join(unescape(re.sub(r"<[^>]+>", " ", cell)).split())
            for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)
        ]
        if cells[0].split()[0] == hypervisor:
            return cells
    raise AssertionError(f"no row of {hypervisor}")


def far_slot() -> tuple[str, str]:
    """Two hours on a day years ahead that no other test books (and no lab of the run
    holds: those are on "localhost", not in these inventories)."""
    start = utcnow().replace(minute=0, second=0, microsecond=0) + timedelta(
        days=200_000 + secrets.randbelow(100_000)
    )
    return start.isoformat(), (start + timedelta(hours=2)).isoformat()


def test_a_booking_no_one_hypervisor_has_room_for_is_spread_and_beyond_that_refused(
    client,
    inventory,
    template,  # noqa: F811
    make_user,
    token_for,
    store,
):
    # The lab's two nodes need 1 CPU each: 1.5 + 0.5 CPUs take one node, not both.
    inventory({"hv-a": 1.5, "hv-b": 0.5})
    start_at, end_at = far_slot()
    body = {"template_id": template, "start_at": start_at, "end_at": end_at}
    headers = bearer(token_for(make_user()))
    refused = client.post("/api/reservations", json=body, headers=headers)
    assert refused.status_code == 409, refused.get_json()
    error = refused.get_json()["error"]
    assert "CPU would be over-committed" in error["message"] and start_at in error["message"]
    assert "hv-a 1.5 CPUs" in error["message"] and "on one hypervisor" not in error["message"]
    assert error["detail"]["free"]["hv-b"]["cpus"] == 0.5
    calendar = client.get(
        f"/api/capacity?from={start_at.replace('+00:00', 'Z')}&to={end_at.replace('+00:00', 'Z')}"
        "&step_minutes=60",
        headers=headers,
    ).get_json()
    assert calendar["capacity"]["cpus"] == 2
    assert [slot["free_cpus"] for slot in calendar["slots"]] == [1.5, 1.5]

    inventory({"hv-a": 1.5, "hv-b": 1.5})  # 2 CPUs on neither, a node on each
    booked = client.post("/api/reservations", json=body, headers=headers)
    assert booked.status_code == 201, booked.get_json()
    with store() as session:
        row = session.get(Reservation, booked.get_json()["id"])
        assert (row.hypervisor, row.placement) == ("hv-a", {"a": "hv-a", "b": "hv-b"})
    assert booked.get_json()["placement"] == {"a": "hv-a", "b": "hv-b"}
    # Each part holds its own hypervisor: 0.5 CPUs left on each, no room for another.
    second = client.post("/api/reservations", json=body, headers=bearer(token_for(make_user())))
    assert second.status_code == 409, second.get_json()
    error = second.get_json()["error"]
    assert error["detail"]["free"] == {
        "hv-a": {"cpus": 0.5, "memory_bytes": 8 * GIB - 256 * 1024**2},
        "hv-b": {"cpus": 0.5, "memory_bytes": 8 * GIB - 256 * 1024**2},
    }
    # Another user learns that someone holds the room, not what or whose.
    assert re.search(r"booked by \d+ booking\(s\) of other users\)$", error["message"])
    assert "reservation" not in str(error) and error["detail"]["booked_by"] == []
    # The owner is told which of their own bookings holds it.
    again = client.post("/api/reservations", json=body, headers=headers)
    own = f"reservation {booked.get_json()['id']}"
    assert again.status_code == 409 and f"booked by {own}" in again.get_json()["error"]["message"]


def test_a_spread_booking_moved_is_placed_anew_and_a_started_one_keeps_its_nodes_where_they_are(
    client,
    inventory,
    template,  # noqa: F811
    make_user,
    token_for,
    store,
):
    inventory({"hv-a": 1.5, "hv-b": 1.5})
    headers = bearer(token_for(make_user()))
    start_at, end_at = far_slot()
    body = {"template_id": template, "start_at": start_at, "end_at": end_at}
    booked = client.post("/api/reservations", json=body, headers=headers)
    assert booked.status_code == 201, booked.get_json()
    url, number = f"/api/reservations/{booked.get_json()['id']}", booked.get_json()["id"]

    def recorded():
        with store() as session:
            row = session.get(Reservation, number)
            return row.hypervisor, row.placement

    assert recorded() == ("hv-a", {"a": "hv-a", "b": "hv-b"})
    # Room on one hypervisor at the new time: placed there whole, no stale spread kept.
    inventory({"hv-a": 4, "hv-b": 4})
    later_start, later_end = far_slot()
    moved = client.patch(url, json={"start_at": later_start, "end_at": later_end}, headers=headers)
    assert moved.status_code == 200, moved.get_json()
    assert recorded() == ("hv-a", None)

    # A started spread booking: each node stays where it runs, its new end checked there.
    inventory({"hv-a": 1.5, "hv-b": 1.5})
    with store() as session:
        row = session.get(Reservation, number)
        row.hypervisor, row.placement = "hv-a", {"a": "hv-a", "b": "hv-b"}
        row.state = ReservationState.STARTED.value
        session.commit()
    longer = (datetime.fromisoformat(later_end) + timedelta(hours=1)).isoformat()
    kept = client.patch(url, json={"start_at": later_start, "end_at": longer}, headers=headers)
    assert kept.status_code == 200, kept.get_json()
    assert recorded() == ("hv-a", {"a": "hv-a", "b": "hv-b"})
    inventory({"hv-a": 1.5, "hv-b": 0.5})  # b's node no longer fits where it runs
    longest = (datetime.fromisoformat(longer) + timedelta(hours=1)).isoformat()
    refused = client.patch(url, json={"start_at": later_start, "end_at": longest}, headers=headers)
    assert refused.status_code == 409, refused.get_json()
    assert refused.get_json()["error"]["detail"]["resource"] == "CPU"
    with store() as session:
        session.get(Reservation, number).state = ReservationState.CANCELLED.value
        session.commit()


def test_the_admins_hypervisors_count_a_spread_lab_on_each_with_its_nodes_there(
    app, inventory, store
):
    inventory({"hv-a": 4, "hv-b": 4})
    name = f"sp-admin-{secrets.token_hex(3)}"
    now = utcnow()
    with store() as session:
        session.add(
            Lab(
                name=name,
                topology=PAIR.replace("name: p4-pair", f"name: {name}"),
                state=LabState.RUNNING.value,
                hypervisor="hv-a",
                placement={"a": "hv-a", "b": "hv-b"},
                created_at=now,
                updated_at=now,
            )
        )
        session.commit()
    try:
        with app.app_context():
            used = {host.name: host for host in hypervisors_now(utcnow())[0]}
        assert (used["hv-a"].labs, used["hv-a"].needs.cpus) == (1, 1.0)
        assert (used["hv-b"].labs, used["hv-b"].needs.cpus) == (1, 1.0)
    finally:
        with store() as session:
            session.execute(delete(Lab).where(Lab.name == name))
            session.commit()


def test_a_started_lab_records_the_hypervisor_its_placement_chose(
    client,
    inventory,
    template,  # noqa: F811
    make_user,
    token_for,
    store,
):
    inventory({"hv-full": 0.5, "hv-room": 10_000})
    started = client.post(
        "/api/labs", json={"template_id": template}, headers=bearer(token_for(make_user()))
    )
    assert started.status_code == 202, started.get_json()
    try:
        with store() as session:
            assert session.get(Lab, started.get_json()["lab"]["id"]).hypervisor == "hv-room"
    finally:
        cancel(started.get_json()["job"]["id"])


def test_a_booking_records_its_hypervisor_a_drain_keeps_it_and_a_move_places_it_anew(
    client,
    inventory,
    template,  # noqa: F811
    make_user,
    token_for,
):
    inventory({"hv-a": 4, "hv-b": 4})
    headers = bearer(token_for(make_user()))
    start_at, end_at = far_slot()
    body = {"template_id": template, "start_at": start_at, "end_at": end_at}
    booked = client.post("/api/reservations", json=body, headers=headers)
    assert booked.status_code == 201, booked.get_json()
    assert booked.get_json()["hypervisor"] == "hv-a"  # first fit
    url = f"/api/reservations/{booked.get_json()['id']}"

    inventory({"hv-a": 4, "hv-b": 4}, draining=("hv-a",))
    assert client.get(url, headers=headers).get_json()["hypervisor"] == "hv-a"  # kept
    other_start, other_end = far_slot()
    other = {"template_id": template, "start_at": other_start, "end_at": other_end}
    second = client.post("/api/reservations", json=other, headers=headers)
    assert second.status_code == 201 and second.get_json()["hypervisor"] == "hv-b"
    moved = client.patch(url, json={"start_at": other_start, "end_at": other_end}, headers=headers)
    assert moved.status_code == 200, moved.get_json()
    assert moved.get_json()["hypervisor"] == "hv-b"


def test_a_start_that_only_a_draining_hypervisor_has_room_for_is_refused_saying_so(
    client,
    inventory,
    template,  # noqa: F811
    make_user,
    token_for,
):
    inventory({"hv-small": 0.5, "hv-drained": 10_000}, draining=("hv-drained",))
    started = client.post(
        "/api/labs", json={"template_id": template}, headers=bearer(token_for(make_user()))
    )
    assert started.status_code == 409, started.get_json()
    error = started.get_json()["error"]
    assert error["message"].startswith("hv-drained is draining (no new labs)"), error
    assert error["detail"]["draining"] == ["hv-drained"]


def test_the_admin_page_shows_a_draining_hypervisor_and_what_is_booked_on_it(
    client,
    inventory,
    template,  # noqa: F811
    make_user,
    token_for,
    login,
):
    inventory({"hv-a": 4, "hv-b": 4})
    start_at, end_at = far_slot()
    body = {"template_id": template, "start_at": start_at, "end_at": end_at}
    booked = client.post("/api/reservations", json=body, headers=bearer(token_for(make_user())))
    assert booked.get_json()["hypervisor"] == "hv-a", booked.get_json()
    inventory({"hv-a": 4, "hv-b": 4}, draining=("hv-a",))
    login(client, make_user(Role.ADMIN))
    page = client.get("/admin/hypervisors").get_data(as_text=True)
    name, *_, later = row_of(page, "hv-a")
    assert name == "hv-a draining: no new labs"
    assert later.startswith("1 (until ") and end_at[:16].replace("T", " ") in later
    assert "draining" not in row_of(page, "hv-b")[0]


def test_a_started_booking_s_end_moves_where_its_lab_runs_even_on_a_draining_hypervisor(
    client, inventory, make_user, token_for, store
):
    # Room only on the draining hypervisor: a new lab would be refused, this one runs there.
    inventory({"mh-run-a": 4, "mh-run-b": 0.5}, draining=("mh-run-a",))
    owner = make_user()
    now = utcnow()
    with store.begin() as session:
        running = Reservation(
            lab_name=f"mh-run-{secrets.token_hex(3)}",
            owner_id=owner.id,
            topology="name: x\nnodes:\n  a: {}\n",
            cpus=2.0,
            memory_bytes=GIB,
            nodes=1,
            hypervisor="mh-run-a",
            start_at=now - timedelta(minutes=5),
            end_at=now + timedelta(hours=1),
            state=ReservationState.STARTED.value,
        )
        session.add(running)
    try:
        later = (now + timedelta(hours=2)).isoformat()
        moved = client.patch(
            f"/api/reservations/{running.id}",
            json={"end_at": later},
            headers=bearer(token_for(owner)),
        )
        assert moved.status_code == 200, moved.get_json()
        assert moved.get_json()["hypervisor"] == "mh-run-a"
    finally:
        with store.begin() as session:
            session.get(Reservation, running.id).state = ReservationState.ENDED.value
