"""Labs of the store hold their tag and management subnet in PostgreSQL (store.allocations),
so workers on any host share them: two labs recorded at once never hold the same; a job's
playbook run uses the store's allocation (LTB_ALLOCATION), never a registry file; remove
frees it in the store; operators' runs by hand still use the registry file; the migration
copies the file's entries of the store's labs."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import uuid
from ipaddress import IPv4Network
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from jobs.queue import submit
from ltb import model
from ltb.allocation import Held, Registry
from ltb.deployed import DEFAULT_STATE_DIR, load_deployed_lab
from store.allocations import held
from store.db import upgrade_database
from store.labs import LabError, request_task
from store.models import JobStatus, Lab
from tests.integration.conftest import BIN, ROOT, TOPOLOGIES, assert_no_leftovers
from tests.jobs.conftest import cleanup, run_to_end  # noqa: F401

pytestmark = pytest.mark.integration

# Found by brute force: the same preferred tag and default subnet.
TWINS = ("al-x31982", "al-x129940")
RACE_WINDOW = 0.5


def pair(name: str, mgmt: str | None = None) -> str:
    text = (TOPOLOGIES / "pair.lab.yml").read_text().replace("name: NAME", f"name: {name}")
    return text.replace("nodes:", f"mgmt: {{ipv4_subnet: {mgmt}}}\nnodes:", 1) if mgmt else text


def holding(store, name: str) -> Held | None:
    with store() as session:
        return held(session.scalars(select(Lab).where(Lab.name == name)).one())


def test_the_twins_prefer_one_tag_and_one_subnet():
    one, two = TWINS
    assert model.lab_tag(one) == model.lab_tag(two)
    assert model.default_mgmt_subnet(one) == model.default_mgmt_subnet(two)


def test_two_labs_recorded_at_once_hold_different_tags_and_subnets(store):
    """The first request holds its transaction open for RACE_WINDOW after choosing; the
    second chooses meanwhile. Without the allocation lock the second would not see the first's
    choice, choose the same, and fail on the table's constraints."""
    recorded = threading.Event()
    errors: list[BaseException] = []

    def record(name: str, wait_first: bool) -> None:
        try:
            if wait_first:
                recorded.wait(10)
            with store.begin() as session:
                request_task(session, name, "deploy", topology=pair(name))
                if not wait_first:
                    recorded.set()
                    time.sleep(RACE_WINDOW)
        except BaseException as error:
            errors.append(error)
            recorded.set()

    threads = [
        threading.Thread(target=record, args=(TWINS[0], False)),
        threading.Thread(target=record, args=(TWINS[1], True)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    first, second = (holding(store, name) for name in TWINS)
    assert first.tag == model.lab_tag(TWINS[0]), "the first took what both prefer"
    assert first.tag != second.tag
    assert not first.mgmt_subnet.overlaps(second.mgmt_subnet)
    with store() as session:  # the recorded addresses are those of the allocation
        lab = session.scalars(select(Lab).where(Lab.name == TWINS[1])).one()
        assert all(IPv4Network(n.mgmt_ipv4, strict=False) == second.mgmt_subnet for n in lab.nodes)
        assert all(second.tag in i.host_name for n in lab.nodes for i in n.interfaces)


def test_a_given_subnet_another_lab_holds_is_refused_naming_it_only_to_who_may_see_it(store):
    holder, late = f"al-given-{uuid.uuid4().hex[:6]}", f"al-late-{uuid.uuid4().hex[:6]}"
    subnet = "10.231.0.0/16"
    with store.begin() as session:
        request_task(session, holder, "deploy", topology=pair(holder, subnet))
    for may_see, named in ((lambda lab: False, "another lab"), (None, f"lab {holder!r}")):
        with pytest.raises(LabError) as refused, store.begin() as session:
            request_task(
                session, late, "deploy", topology=pair(late, "10.231.7.0/24"), may_see=may_see
            )
        assert f"management subnet 10.231.7.0/24 overlaps {subnet}" in str(refused.value)
        assert named in str(refused.value)
        if may_see is not None:
            assert holder not in str(refused.value)
    with store() as session:
        assert session.scalars(select(Lab).where(Lab.name == late)).first() is None
    kept = holding(store, holder)
    assert (kept.mgmt_subnet, kept.given) == (IPv4Network(subnet), True)


def test_a_job_deploys_with_the_stores_allocation_and_remove_frees_it(
    store,
    processes,
    cleanup,  # noqa: F811
):
    """The registry file holds another allocation for the lab's name (a run by hand long
    ago): the job's run neither uses nor touches it."""
    name = f"al-job-{uuid.uuid4().hex[:6]}"
    cleanup[name] = pair(name)
    registry = Registry(DEFAULT_STATE_DIR)
    deploy = submit(name, "deploy", topology=pair(name))
    ours = holding(store, name)
    stale = IPv4Network("10.232.9.0/24")
    registry.allocate(model.Lab(name, None, (), (), stale, model.lab_tag(name)), stale)
    try:
        processes.start("worker")
        deployed_job = run_to_end(store, processes, deploy)
        assert deployed_job.status == JobStatus.SUCCESSFUL, deployed_job.result
        assert load_deployed_lab(name).allocation == ours.allocation
        assert ours.mgmt_subnet != stale
        assert registry.held()[name].mgmt_subnet == stale, "the run touched the registry file"

        removal = run_to_end(store, processes, submit(name, "remove"))
        assert removal.status == JobStatus.SUCCESSFUL, removal.result
        assert holding(store, name) is None, "remove did not free the lab's allocation"
        assert registry.held()[name].mgmt_subnet == stale
        assert_no_leftovers(name)
    finally:
        registry.release(name)


def inventory(path: Path, state_dir: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [BIN / "ansible-inventory", "-i", "inventory/", "-i", path, "--list"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "LTB_STATE_DIR": str(state_dir), **env},
    )


def lab_network(listed: subprocess.CompletedProcess) -> dict:
    """The ltb_lab_network variable of the listed inventory, its values unwrapped."""

    def plain(value):
        if isinstance(value, dict):
            if set(value) == {"__ansible_unsafe"}:
                return value["__ansible_unsafe"]
            return {k: plain(v) for k, v in value.items()}
        return [plain(v) for v in value] if isinstance(value, list) else value

    def find(value):
        if isinstance(value, dict):
            if "ltb_lab_network" in value:
                return plain(value["ltb_lab_network"])
            return next((f for f in map(find, value.values()) if f is not None), None)
        return None

    return find(json.loads(listed.stdout))


def test_a_run_by_hand_allocates_in_the_registry_file_and_a_jobs_run_takes_what_it_is_given(
    tmp_path,
):
    name = "al-by-hand"
    path = tmp_path / f"{name}.lab.yml"
    path.write_text(pair(name))
    by_hand = inventory(path, tmp_path / "hand")
    assert by_hand.returncode == 0, by_hand.stderr
    entry = Registry(tmp_path / "hand").held()[name]
    assert entry.tag == model.lab_tag(name)

    given = inventory(path, tmp_path / "job", LTB_ALLOCATION="0abc12/172.22.9.0/24")
    assert given.returncode == 0, given.stderr
    assert not (tmp_path / "job").exists(), "a job's run wrote a registry file"
    network = lab_network(given)
    assert (network["tag"], network["mgmt_subnet"]) == ("0abc12", "172.22.9.0/24")
    assert network["allocations"] == "", "remove would release in a file"

    wrong = inventory(path, tmp_path / "job", LTB_ALLOCATION="nothex/172.22.9.0/24")
    assert wrong.returncode != 0 and "LTB_ALLOCATION" in wrong.stderr
    path.write_text(pair(name, "10.233.0.0/24"))
    other = inventory(path, tmp_path / "job", LTB_ALLOCATION="0abc12/172.22.9.0/24")
    assert other.returncode != 0
    assert "topology's mgmt.ipv4_subnet is 10.233.0.0/24" in other.stderr


def test_a_run_by_hand_of_a_lab_the_registry_file_lacks_takes_the_allocation_it_runs_with(
    tmp_path,
):
    """A lab of the portal (its allocation is the store's) removed by hand from its kept
    topology: the run uses the names the lab was deployed with, not its preferred ones."""
    name, state = "al-kept", tmp_path / "state"
    kept = state / "labs" / name
    kept.mkdir(parents=True)
    (kept / "allocation.json").write_text(
        json.dumps({"lab": name, "tag": "00dd01", "mgmt_subnet": "172.22.77.0/24"})
    )
    (kept / "topology.lab.yml").write_text(pair(name))
    listed = inventory(kept / "topology.lab.yml", state)
    assert listed.returncode == 0, listed.stderr
    network = lab_network(listed)
    assert (network["tag"], network["mgmt_subnet"]) == ("00dd01", "172.22.77.0/24")
    assert Registry(state).held()[name].tag == "00dd01", "remove would release another one"


def test_the_migration_copies_the_registry_files_entries_of_the_stores_labs(
    job_settings, tmp_path, monkeypatch
):
    admin_url = make_url(job_settings.database_url)
    name = f"ltb_test_al_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    try:
        upgrade_database(url, "0004")
        engine = create_engine(url)
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO labs (name, topology, state, hypervisor, created_at, updated_at)"
                    " VALUES ('al-old', '', 'running', 'localhost', now(), now())"
                )
            )
        (tmp_path / "allocations.json").write_text(
            json.dumps(
                {
                    "labs": {
                        "al-old": {"tag": "00aa11", "mgmt_subnet": "172.23.1.0/24"},
                        "al-hand": {"tag": "00aa12", "mgmt_subnet": "172.23.2.0/24"},
                    }
                }
            )
        )
        monkeypatch.setenv("LTB_STATE_DIR", str(tmp_path))
        upgrade_database(url)
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT name, tag, host(mgmt_subnet), mgmt_subnet_given FROM labs")
            ).all()
        engine.dispose()
        assert [tuple(row) for row in rows] == [("al-old", "00aa11", "172.23.1.0", False)]
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
