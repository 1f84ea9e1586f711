"""The jobs CLI's deploy and reserve are placed and checked as the portal's are
(store.placement, real PostgreSQL and Redis, no worker): a lab no hypervisor has room for is
refused with what each has free, one that fits goes where there is room, a pin to a draining
hypervisor is refused naming the pin, and --ignore-capacity queues it all the same."""

from __future__ import annotations

import secrets
from datetime import timedelta

import pytest
import yaml
from sqlalchemy import delete, select

from jobs.__main__ import main as jobs_cli
from jobs.queue import cancel
from store.models import Job, Lab, Reservation, utcnow

GIB = 1024**3


def topology(name: str, pin: str | None = None) -> str:
    """Two linked containers of 1 CPU and 256 MiB; `pin`: node b's hypervisor."""
    b = {"resources": {"cpus": 1, "memory": "256MiB"}, "interfaces": {"eth1": None}}
    if pin:
        b["hypervisor"] = pin
    return yaml.safe_dump(
        {
            "name": name,
            "nodes": {
                "a": {"resources": {"cpus": 1, "memory": "256MiB"}, "interfaces": {"eth1": None}},
                "b": b,
            },
            "links": [{"endpoints": ["a:eth1", "b:eth1"]}],
        }
    )


@pytest.fixture
def inventory(tmp_path, monkeypatch, job_settings, redis_db):
    """inventory({host: cpus}, draining) -> LTB_HYPERVISORS of these (8 GiB each)."""

    def make(cpus: dict[str, float], draining: tuple[str, ...] = ()) -> None:
        hosts = {
            host: {"ltb_capacity_cpus": count, "ltb_capacity_memory": 8 * GIB}
            | ({"ltb_drain": True} if host in draining else {})
            for host, count in cpus.items()
        }
        (tmp_path / "hosts.yaml").write_text(yaml.safe_dump({"hypervisors": {"hosts": hosts}}))

    monkeypatch.setenv("LTB_HYPERVISORS", str(tmp_path))
    return make


@pytest.fixture
def lab(tmp_path, store):
    """lab(pin=None) -> (name, topology file) of a new lab; its rows go afterwards."""
    names = []

    def make(pin: str | None = None):
        name = f"pk-cli-{secrets.token_hex(3)}"
        names.append(name)
        path = tmp_path / f"{name}.lab.yml"
        path.write_text(topology(name, pin))
        return name, str(path)

    yield make
    with store() as session:
        for job in session.scalars(select(Job).join(Job.lab).where(Lab.name.in_(names))):
            cancel(job.id)
        session.execute(delete(Reservation).where(Reservation.lab_name.in_(names)))
        session.execute(delete(Lab).where(Lab.name.in_(names)))
        session.commit()


def recorded(store, name: str) -> Lab | None:
    with store() as session:
        return session.scalars(select(Lab).where(Lab.name == name)).one_or_none()


def test_a_cli_deploy_no_hypervisor_has_room_for_is_refused_and_the_override_queues_it(
    inventory, lab, store, capsys, job_settings
):
    inventory({"pk-small": 1.5})
    name, path = lab()
    assert jobs_cli(["submit", "deploy", name, path]) == 2
    error = capsys.readouterr().err
    assert "CPU would be over-committed" in error, error
    assert "this lab needs 2 CPUs and 0.5 GiB" in error and "pk-small 1.5 CPUs" in error
    assert "--ignore-capacity" in error
    assert recorded(store, name) is None  # nothing recorded, nothing queued

    assert jobs_cli(["submit", "deploy", name, path, "--ignore-capacity"]) == 0
    assert capsys.readouterr().out.strip()  # the job id
    assert recorded(store, name).hypervisor == job_settings.hypervisor


def test_a_cli_deploy_goes_to_the_hypervisor_with_room(inventory, lab, store, capsys):
    inventory({"pk-full": 0.5, "pk-room": 64})
    name, path = lab()
    assert jobs_cli(["submit", "deploy", name, path]) == 0, capsys.readouterr().err
    assert recorded(store, name).hypervisor == "pk-room"


def test_a_cli_deploy_pinned_to_a_draining_hypervisor_is_refused_naming_the_pin(
    inventory, lab, store, capsys
):
    inventory({"pk-open": 64, "pk-drained": 64}, draining=("pk-drained",))
    name, path = lab(pin="pk-drained")
    assert jobs_cli(["submit", "deploy", name, path]) == 2
    error = capsys.readouterr().err
    assert "nodes.b.hypervisor: hypervisor pk-drained is draining" in error, error
    assert recorded(store, name) is None


def test_a_cli_reservation_is_placed_where_there_is_room_or_refused(inventory, lab, store, capsys):
    start = utcnow().replace(microsecond=0) + timedelta(days=300_000 + secrets.randbelow(9999))
    times = [start.isoformat(), (start + timedelta(hours=2)).isoformat()]
    name, path = lab()
    inventory({"pk-full": 0.5})
    assert jobs_cli(["reserve", path, *times]) == 2
    assert "CPU would be over-committed" in capsys.readouterr().err
    inventory({"pk-full": 0.5, "pk-room": 64})
    assert jobs_cli(["reserve", path, *times]) == 0, capsys.readouterr().err
    with store() as session:
        (booked,) = session.scalars(select(Reservation).where(Reservation.lab_name == name))
        assert booked.hypervisor == "pk-room"
