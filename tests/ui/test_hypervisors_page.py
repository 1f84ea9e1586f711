"""The admin's hypervisors page, each hypervisor apart (light: the Flask test client, rows made
in the store): a lab counts on the hypervisor it runs on, with its reservation's CPUs and
memory while one holds it; a reservation that holds now and has no lab yet is "not placed
yet"; a hypervisor the inventory does not name is said to be missing from it."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from html import unescape

import pytest

from store.models import Lab, LabState, Reservation, Role, utcnow
from tests.app_config import portal_app
from tests.portal.conftest import (
    login,  # noqa: F401
)

GIB = 1024**3
TWO_CONTAINERS = "name: x\nnodes:\n  a: {}\n  b: {}\n"


@pytest.fixture
def admin_page(job_settings, make_user, login, tmp_path):  # noqa: F811
    (tmp_path / "hosts.yaml").write_text(
        "hypervisors:\n  hosts:\n"
        "    localhost:\n      ltb_capacity_cpus: 4\n      ltb_capacity_memory: 8GiB\n"
    )
    app = portal_app(job_settings.database_url, tmp_path)
    web = app.test_client()
    login(web, make_user(Role.ADMIN))
    return lambda: web.get("/admin/hypervisors").get_data(as_text=True)


def row_of(page: str, hypervisor: str) -> list[str]:
    """The texts of the hypervisor's row: its name (and note), then each cell."""
    for row in re.findall(r"<tr id=\"hypervisor-\d+\">(.*?)</tr>", page, re.S):
        cells = [
            " ".join(unescape(re.sub(r"<[^>]+>", " ", cell)).split())
            for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)
        ]
        if cells[0].split(" not in")[0] == hypervisor:
            return cells
    raise AssertionError(f"no row of {hypervisor}")


def test_labs_count_on_their_hypervisor_and_reservations_without_a_lab_are_not_placed(
    admin_page, store
):
    now = utcnow()
    elsewhere = f"ue-hv-{uuid.uuid4().hex[:6]}"
    lab_name = f"ue-{uuid.uuid4().hex[:6]}"
    lab = Lab(
        name=lab_name,
        topology=TWO_CONTAINERS,
        state=LabState.RUNNING.value,
        hypervisor=elsewhere,
        created_at=now,
        updated_at=now,
    )
    held = Reservation(  # holds its lab's capacity now: its figures count, not the topology's
        lab_name=lab_name,
        topology=TWO_CONTAINERS,
        cpus=3.0,
        memory_bytes=2 * GIB,
        nodes=2,
        start_at=now - timedelta(minutes=5),
        end_at=now + timedelta(hours=1),
        state="started",
    )
    waiting = Reservation(  # holds now, its lab not deployed yet
        lab_name=f"ue-{uuid.uuid4().hex[:6]}",
        topology=TWO_CONTAINERS,
        cpus=1.5,
        memory_bytes=GIB,
        nodes=3,
        start_at=now - timedelta(minutes=1),
        end_at=now + timedelta(hours=1),
        state="scheduled",
    )
    with store() as session:
        session.add_all([lab, held, waiting])
        session.commit()
    try:
        page = admin_page()
        assert row_of(page, elsewhere) == [
            f"{elsewhere} not in the inventory",
            "3 CPUs",
            "2 GiB",
            "1",
            "2",
            "1",
            "0",  # booked later
        ]
        placed_nowhere = row_of(page, "not placed yet")
        assert placed_nowhere[1:3] == ["1.5 CPUs", "1 GiB"]
        assert placed_nowhere[3:] == ["0", "3", "1", "0"]
        localhost = row_of(page, "localhost")
        assert re.fullmatch(r"[\d.]+ of 4 CPUs \(\d+%\)( over capacity)?", localhost[1])
    finally:
        with store() as session:
            session.query(Reservation).filter(Reservation.id.in_([held.id, waiting.id])).delete()
            session.query(Lab).filter_by(id=lab.id).delete()
            session.commit()
