"""Labs through the portal: started from a template by a student, deployed by a real worker,
followed live, read node by node, captured, and removed; never seen by another student."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import uuid
from datetime import timedelta

import docker
import pytest

from jobs.queue import cancel
from ltb.deployed import load_deployed_lab
from store.models import Role, Template, TemplateVersion, Visibility, utcnow
from tests.integration.conftest import TOPOLOGIES, assert_no_leftovers
from tests.jobs.conftest import (  # noqa: F401
    TASK_WAIT,
    job_ended,
    processes,
    redis_db,
    wait_for,
)
from tests.portal.conftest import bearer

PCAP_MAGIC = {b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"}


@pytest.fixture
def template(store, make_user):
    """A public template of a teacher, version 1 being the two-node pair lab."""
    teacher = make_user(Role.TEACHER)
    now = utcnow()
    with store() as session:
        row = Template(
            owner_id=teacher.id,
            name=f"p3-{uuid.uuid4().hex[:4]}",
            visibility=Visibility.PUBLIC.value,
            created_at=now,
            updated_at=now,
        )
        row.versions.append(
            TemplateVersion(
                number=1,
                topology=(TOPOLOGIES / "pair.lab.yml").read_text(),
                created_at=now,
                created_by_id=teacher.id,
            )
        )
        session.add(row)
        session.commit()
        return row.id


@pytest.fixture
def students(make_user, token_for):
    """(owner's headers, another student's headers)."""
    return bearer(token_for(make_user())), bearer(token_for(make_user()))


def start(client, headers, template_id, **extra):
    answer = client.post("/api/labs", json={"template_id": template_id, **extra}, headers=headers)
    assert answer.status_code == 202, answer.get_json()
    return answer.get_json()


def sse_events(body: str) -> list[dict]:
    events = []
    for block in body.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if ": " in line and line[0] != ":"
        )
        if "data" in fields:
            events.append(fields | {"data": json.loads(fields["data"])})
    return events


def jobs_command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jobs", *args], capture_output=True, text=True, timeout=60
    )


def assert_hidden_from(client, headers, lab_id: int, job_id: str) -> None:
    for path in (
        f"/api/labs/{lab_id}",
        f"/api/jobs/{job_id}",
        f"/api/jobs/{job_id}/events",
        f"/api/jobs/{job_id}/stream",
        f"/api/labs/{lab_id}/nodes/a",
        f"/api/labs/{lab_id}/picture.svg",
        f"/api/labs/{lab_id}/capture?endpoint=a:eth1&seconds=1",
    ):
        answer = client.get(path, headers=headers)
        assert answer.status_code == 404, (path, answer.status_code)
        assert answer.get_json()["error"]["status"] == 404
    assert client.delete(f"/api/labs/{lab_id}", headers=headers).status_code == 404
    assert client.get("/api/labs", headers=headers).get_json()["total"] == 0


def test_a_started_lab_is_its_owners_alone_and_refuses_tasks_it_cannot_run(
    client,
    template,
    students,
    redis_db,  # noqa: F811
    job_settings,
):
    owner, other = students
    started = start(client, owner, template, title="my first lab")
    lab, job = started["lab"], started["job"]
    try:
        assert lab["name"].startswith("p3-") and lab["title"] == "my first lab"
        assert (lab["state"], job["task"], job["status"]) == ("deploying", "deploy", "queued")
        assert [node["name"] for node in lab["nodes"]] == ["a", "b"]
        listed = client.get("/api/labs?state=deploying", headers=owner).get_json()
        assert [item["id"] for item in listed["items"]] == [lab["id"]]
        assert client.get("/api/labs?state=running", headers=owner).get_json()["total"] == 0

        assert_hidden_from(client, other, lab["id"], job["id"])

        tasks = f"/api/labs/{lab['id']}/tasks"
        unknown = client.post(f"{tasks}/format-disk", json={}, headers=owner)
        assert (
            unknown.status_code == 422 and "format-disk" in unknown.get_json()["error"]["message"]
        )
        bad = client.post(f"{tasks}/snapshot", json={"params": {"name": "../x"}}, headers=owner)
        assert bad.status_code == 422 and "name" in bad.get_json()["error"]["message"]
        busy = client.post(f"{tasks}/snapshot", json={"params": {"name": "s1"}}, headers=owner)
        assert busy.status_code == 409 and job["id"] in busy.get_json()["error"]["message"]
        wrong = client.get(f"/api/labs/{lab['id']}/capture?endpoint=a:eth9", headers=owner)
        assert wrong.status_code == 422 and "eth9" in wrong.get_json()["error"]["message"]
        too_long = client.get(
            f"/api/labs/{lab['id']}/capture?endpoint=a:eth1&seconds=61", headers=owner
        )
        assert too_long.status_code == 422
        assert (
            client.post("/api/labs", json={"template_id": 999999}, headers=owner).status_code == 404
        )
        no_version = client.post(
            "/api/labs", json={"template_id": template, "version": 7}, headers=owner
        )
        assert no_version.status_code == 422

        assert cancel(job["id"]) == "canceled"
        # A lab that is not running answers about its nodes without reading them.
        node = client.get(f"/api/labs/{lab['id']}/nodes/a", headers=owner).get_json()
        assert node["live"]["reachable"] is False and "removed" in node["live"]["error"]
        wrong_state = client.post(
            f"{tasks}/mirror", json={"params": {"endpoint": "a:eth1"}}, headers=owner
        )
        assert (
            wrong_state.status_code == 409
            and "running" in wrong_state.get_json()["error"]["message"]
        )
    finally:
        cancel(job["id"])


# Two FRR routers: a frr.conf alone makes a node run zebra and staticd (docs/topology.md).
FRR_PAIR = """\
name: pe-frr-pair
nodes:
  r1:
    interfaces:
      eth1: {ipv4: 10.201.14.1/24}
    files:
      /etc/frr/frr.conf: |
        frr defaults traditional
        hostname r1
        ip route 10.254.2.0/24 10.201.14.2
  r2:
    interfaces:
      eth1: {ipv4: 10.201.14.2/24}
    files:
      /etc/frr/frr.conf: |
        frr defaults traditional
        hostname r2
        ip route 10.254.1.0/24 10.201.14.1
links:
  - endpoints: [r1:eth1, r2:eth1]
"""


@pytest.mark.integration
def test_a_template_reserved_from_now_runs_shows_frr_config_captures_and_leaves_nothing(
    client,
    students,
    processes,  # noqa: F811
    store,
):
    """The issue's end-to-end path, all through the API with the real worker and scheduler:
    upload a template, reserve it from now, the scheduler deploys it, read a router's running
    config, download a capture, cancel the reservation (it ends now), nothing is left."""
    owner, other = students
    uploaded = client.post(
        "/api/templates",
        json={"name": f"pe-{uuid.uuid4().hex[:4]}", "topology": FRR_PAIR},
        headers=owner,
    )
    assert uploaded.status_code == 201, uploaded.get_json()
    processes.start("worker")
    processes.start("scheduler")
    end_at = (utcnow() + timedelta(minutes=30)).isoformat()
    booked = client.post(
        "/api/reservations",
        json={"template_id": uploaded.get_json()["id"], "start_at": "now", "end_at": end_at},
        headers=owner,
    )
    assert booked.status_code == 201, booked.get_json()
    reservation = f"/api/reservations/{booked.get_json()['id']}"
    lab_name = booked.get_json()["lab_name"]
    ended = False
    try:
        # The scheduler's begin edge requests the deploy.
        deploy = wait_for(
            lambda: client.get(reservation, headers=owner).get_json()["deploy_job_id"],
            60,
            "the reservation's start",
            processes,
        )
        assert client.get(reservation, headers=owner).get_json()["state"] == "started"
        listed = client.get("/api/labs", headers=owner).get_json()["items"]
        lab_id = next(item["id"] for item in listed if item["name"] == lab_name)

        # Server-sent events of the deploy: every event with its id, then its end.
        stream = client.get(f"/api/jobs/{deploy}/stream", headers=owner)
        assert stream.status_code == 200 and stream.mimetype == "text/event-stream"
        assert stream.headers["X-Accel-Buffering"] == "no"
        events = sse_events(stream.get_data(as_text=True))
        progress = [e for e in events if e.get("event") == "progress"]
        assert progress and events[-1]["event"] == "end"
        assert events[-1]["data"]["status"] == "successful", events[-1]
        ids = [int(e["id"]) for e in progress]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        resumed = client.get(
            f"/api/jobs/{deploy}/stream", headers=owner | {"Last-Event-ID": str(ids[-2])}
        )
        resumed_ids = [e.get("id") for e in sse_events(resumed.get_data(as_text=True))]
        assert resumed_ids == [str(ids[-1]), None]

        polled = client.get(f"/api/jobs/{deploy}/events?after={ids[0]}", headers=owner).get_json()
        assert polled["events"][0]["seq"] == ids[1] and polled["job"]["status"] == "successful"

        lab = client.get(f"/api/labs/{lab_id}", headers=owner).get_json()
        assert lab["state"] == "running" and lab["job"]["id"] == deploy
        picture = client.get(f"/api/labs/{lab_id}/picture.svg", headers=owner)
        assert picture.mimetype == "image/svg+xml"
        svg = picture.get_data(as_text=True)
        mgmt = {node["name"]: node["mgmt_ipv4"] for node in lab["nodes"]}
        assert all(address.split("/")[0] in svg for address in mgmt.values()), (mgmt, svg[:400])
        assert_hidden_from(client, other, lab_id, deploy)

        # The operators' commands read the same store.
        followed = jobs_command("follow", deploy)
        assert followed.returncode == 0 and f"job {deploy} successful" in followed.stdout
        assert len(followed.stdout.splitlines()) == len(progress) + 1  # and its end
        assert deploy in jobs_command("jobs", "--lab", lab_name).stdout
        assert f"{lab_name} " in jobs_command("labs").stdout

        # Device information: the router's running config, read from FRR itself.
        node = client.get(f"/api/labs/{lab_id}/nodes/r1", headers=owner).get_json()
        assert node["kind"] == "container" and node["startup_files"] == ["/etc/frr/frr.conf"]
        assert node["ssh"].startswith("ssh -i ") and node["mgmt_ipv4"].split("/")[0] in node["ssh"]
        live = node["live"]
        assert live["reachable"] is True and live["frr_running"] is True, live
        assert live["frr_version"] and "frr version" in live["running_config"], live
        assert "hostname r1" in live["running_config"]
        assert "ip route 10.254.2.0/24 10.201.14.2" in live["running_config"]

        # A capture while a ping runs: a pcap with packets, then the mirror is gone.
        container = docker.from_env().containers.get(
            load_deployed_lab(lab_name).container_name("r1")
        )
        container.exec_run(["ping", "-c", "30", "-i", "0.1", "10.201.14.2"], detach=True)
        capture = client.get(
            f"/api/labs/{lab_id}/capture?endpoint=r1:eth1&seconds=3&packets=1000", headers=owner
        )
        assert capture.status_code == 200
        assert capture.mimetype == "application/vnd.tcpdump.pcap"
        assert "attachment" in capture.headers["Content-Disposition"]
        pcap = capture.get_data()
        assert pcap[:4] in PCAP_MAGIC and len(pcap) > 24 + 16, len(pcap)
        first_length = struct.unpack("<I" if pcap[0] == 0xD4 else ">I", pcap[32:36])[0]
        assert first_length > 0

        # A node that is down answers with what is wrong, not an error.
        docker.from_env().containers.get(load_deployed_lab(lab_name).container_name("r2")).stop(
            timeout=1
        )
        down = client.get(f"/api/labs/{lab_id}/nodes/r2", headers=owner)
        assert down.status_code == 200
        assert down.get_json()["live"]["reachable"] is False
        assert "exited" in down.get_json()["live"]["error"]

        # Cancelling a started reservation ends it now: its lab is removed, nothing is left.
        cancelled = client.delete(reservation, headers=owner)
        assert cancelled.status_code == 200, cancelled.get_json()
        remove_job = cancelled.get_json()["remove_job_id"]
        assert cancelled.get_json()["state"] == "ended" and remove_job
        removal = wait_for(lambda: job_ended(store, remove_job), TASK_WAIT, "remove", processes)
        ended = True
        assert removal.status == "successful", removal.result
        assert client.get(f"/api/labs/{lab_id}", headers=owner).get_json()["state"] == "removed"
        assert_no_leftovers(lab_name)
    finally:
        if not ended:
            _end_reservation(client, owner, reservation, store, processes)


def _end_reservation(client, headers, reservation: str, store, procs) -> None:
    """After a failure: end the reservation (its lab's remove) once its deploy has ended."""
    from jobs.queue import submit

    row = client.get(reservation, headers=headers).get_json()
    if row["deploy_job_id"]:
        wait_for(lambda: job_ended(store, row["deploy_job_id"]), TASK_WAIT, "deploy", procs)
    remove_job = row["remove_job_id"]
    if row["state"] in ("scheduled", "started"):
        remove_job = client.delete(reservation, headers=headers).get_json().get("remove_job_id")
    if row["deploy_job_id"] and not remove_job:
        remove_job = submit(row["lab_name"], "remove")
    if remove_job:
        wait_for(lambda: job_ended(store, remove_job), TASK_WAIT, "remove", procs)
