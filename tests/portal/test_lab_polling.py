"""What browsers poll: the lab list and a lab's own answer. The list leaves nodes and links to
the lab's own answer (unless asked with details=true); both answer with an ETag, and a 304
without a body while nothing changed, after the caller is checked as always; a lab's answer
takes the same few queries whatever its number of nodes (bench/portal.py measures the
latency). Labs are rows of the store here (nothing is deployed)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, event, update

from portal.api.labs import LabOut, polled_answer
from portal.auth import token_hash
from store.db import db
from store.models import ApiToken, Connection, Interface, Job, Lab, Node, User, utcnow
from tests.portal.conftest import bearer


def add_lab(store, owner_id: int, nodes: int) -> int:
    """A running lab of `nodes` nodes in a ring of links, with one ended deploy job."""
    name = f"h4-{uuid.uuid4().hex[:8]}"
    now = utcnow()
    with store.begin() as session:
        lab = Lab(
            name=name,
            owner_id=owner_id,
            title="h4 polling",
            topology=f"name: {name}\n",
            state="running",
            hypervisor="elsewhere",  # node states "unknown": no Docker read in these tests
            created_at=now,
            updated_at=now,
        )
        links = [Connection(index=k, vlan=10 + k, name=f"link{k}") for k in range(nodes)]
        lab.connections.extend(links)
        for k in range(nodes):
            node = Node(name=f"r{k}", kind="container", image="ltb/node", mgmt_ipv4=f"10.9.9.{k}")
            node.interfaces.append(Interface(name="eth1", host_name=f"h4{k}a", connection=links[k]))
            node.interfaces.append(
                Interface(name="eth2", host_name=f"h4{k}b", connection=links[k - 1])
            )
            lab.nodes.append(node)
        session.add(lab)
        session.add(
            Job(
                id=str(uuid.uuid4()),
                lab=lab,
                task="deploy",
                params={},
                status="successful",
                lab_state_before="removed",
                enqueued_at=now - timedelta(seconds=5),
                ended_at=now,
                progress={"done": 3},
                result={"rc": 0},
            )
        )
        session.flush()
        return lab.id


@pytest.fixture
def owned_lab(store, make_user):
    owner = make_user("student")
    return add_lab(store, owner.id, 3), owner


def test_the_lab_list_leaves_nodes_and_links_to_the_labs_own_answer(client, owned_lab, token_for):
    lab_id, owner = owned_lab
    headers = bearer(token_for(owner))
    own = client.get(f"/api/labs/{lab_id}", headers=headers).get_json()
    assert len(own["nodes"]) == 3 and len(own["links"]) == 3

    (item,) = client.get("/api/labs", headers=headers).get_json()["items"]
    assert "nodes" not in item and "links" not in item
    assert item == {k: v for k, v in own.items() if k not in ("nodes", "links")}

    (detailed,) = client.get("/api/labs?details=true", headers=headers).get_json()["items"]
    assert detailed == own


def test_an_unchanged_lab_answers_304_without_a_body_until_it_changes(
    client, store, owned_lab, token_for
):
    lab_id, owner = owned_lab
    headers = bearer(token_for(owner))
    for path in (f"/api/labs/{lab_id}", "/api/labs"):
        first = client.get(path, headers=headers)
        assert first.status_code == 200 and first.headers["ETag"]
        assert "private" in first.headers["Cache-Control"]
        assert "no-cache" in first.headers["Cache-Control"]
        assert "Authorization" in first.headers["Vary"]
        again = client.get(path, headers=headers | {"If-None-Match": first.headers["ETag"]})
        assert again.status_code == 304 and again.data == b""
        assert again.headers["ETag"] == first.headers["ETag"]

    tag = client.get(f"/api/labs/{lab_id}", headers=headers).headers["ETag"]
    with store.begin() as session:
        session.execute(update(Lab).where(Lab.id == lab_id).values(state="removing"))
    changed = client.get(f"/api/labs/{lab_id}", headers=headers | {"If-None-Match": tag})
    assert changed.status_code == 200 and changed.get_json()["state"] == "removing"
    assert changed.headers["ETag"] != tag


def test_an_etag_gets_nobody_else_a_304(client, owned_lab, token_for, make_user):
    lab_id, owner = owned_lab
    tag = client.get(f"/api/labs/{lab_id}", headers=bearer(token_for(owner))).headers["ETag"]
    other = bearer(token_for(make_user("student"))) | {"If-None-Match": tag}
    assert client.get(f"/api/labs/{lab_id}", headers=other).status_code == 404
    assert client.get(f"/api/labs/{lab_id}", headers={"If-None-Match": tag}).status_code == 401
    listed = client.get("/api/labs", headers=other)
    assert listed.status_code == 200 and listed.get_json()["total"] == 0


def count_statements(app, request) -> int:
    statements = []

    def note(*args) -> None:
        statements.append(args[2])

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        assert request().status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", note)
    return len(statements)


def test_a_labs_answer_takes_as_many_queries_for_twelve_nodes_as_for_two(
    app, client, store, make_user, token_for
):
    owner = make_user("student")
    headers = bearer(token_for(owner))
    small, big = add_lab(store, owner.id, 2), add_lab(store, owner.id, 12)
    client.get(f"/api/labs/{small}", headers=headers)  # the token's last use is recorded once

    def answer(lab_id):
        return lambda: client.get(f"/api/labs/{lab_id}", headers=headers)

    queries = count_statements(app, answer(small))
    # the token with its user; the lab with its nodes, interfaces and current job; its links
    assert count_statements(app, answer(big)) == queries <= 3
    listed = count_statements(app, lambda: client.get("/api/labs", headers=headers))
    detailed = count_statements(app, lambda: client.get("/api/labs?details=true", headers=headers))
    # the token with its user, the courses the student teaches, the page of labs with their
    # count and current jobs; with details, nodes, interfaces and links
    assert listed <= 3 and detailed <= 6


def messages_to_postgresql(app, request, trace_path) -> list[str]:
    """What the app sent PostgreSQL for one request, from libpq's own trace (to `trace_path`)
    of each connection it checked out: "Query <text>" for a simple query (BEGIN, ROLLBACK),
    "Sync" ending each statement of the extended protocol; each of them is one round trip."""
    with app.app_context():
        engine = db.engine
    with trace_path.open("w") as trace_file:

        def trace(dbapi_connection, record, proxy) -> None:
            dbapi_connection.pgconn.trace(os.dup(trace_file.fileno()))  # libpq closes its copy

        def untrace(dbapi_connection, record) -> None:
            dbapi_connection.pgconn.untrace()

        event.listen(engine, "checkout", trace)
        event.listen(engine, "checkin", untrace)
        try:
            assert request().status_code == 200
        finally:
            event.remove(engine, "checkout", trace)
            event.remove(engine, "checkin", untrace)
    sent = []
    for line in trace_path.read_text().splitlines():
        fields = line.split("\t")
        if len(fields) > 3 and fields[1] == "F" and fields[3] in ("Query", "Sync"):
            sent.append(" ".join(fields[3:]).strip())
    return sent


def test_a_polled_answer_reads_in_autocommit_one_round_trip_per_statement(
    app, client, owned_lab, token_for, tmp_path
):
    # No BEGIN before the first statement and no ROLLBACK after the last: two round trips of
    # a polled answer's five (bench/portal.py), each a wait for its thread under load.
    lab_id, owner = owned_lab
    headers = bearer(token_for(owner))
    client.get("/api/labs", headers=headers)  # the token's last use is recorded once
    # the token with its user, the courses the student teaches, the page; the token with
    # its user, the lab with its nodes and current job, its links
    for name, path in (("list", "/api/labs"), ("lab", f"/api/labs/{lab_id}")):
        sent = messages_to_postgresql(
            app, lambda path=path: client.get(path, headers=headers), tmp_path / name
        )
        assert sent == ["Sync"] * 3, (path, sent)


def test_each_listed_lab_carries_its_started_job_before_later_ended_ones(
    client, store, make_user, token_for
):
    owner = make_user("student")
    headers = bearer(token_for(owner))
    busy, idle, bare = (add_lab(store, owner.id, 1) for _ in range(3))
    now = utcnow()
    with store.begin() as session:
        for lab_id, status, ago in ((busy, "started", 60), (busy, "successful", 1)):
            session.add(
                Job(
                    id=f"h7-{uuid.uuid4().hex[:8]}",
                    lab_id=lab_id,
                    task="snapshot",
                    params={},
                    status=status,
                    lab_state_before="running",
                    enqueued_at=now - timedelta(seconds=ago),
                    progress={},
                    result={},
                )
            )
        session.execute(delete(Job).where(Job.lab_id == bare))
    listed = {
        lab["id"]: lab["job"] for lab in client.get("/api/labs", headers=headers).json["items"]
    }
    assert listed[busy]["status"] == "started" and listed[busy]["task"] == "snapshot"
    assert listed[idle]["task"] == "deploy" and listed[bare] is None
    shown = client.get(f"/api/labs/{busy}", headers=headers).json["job"]
    assert shown == listed[busy]
    assert client.get(f"/api/labs/{bare}", headers=headers).json["job"] is None


def test_a_token_revoked_or_a_user_disabled_in_the_store_is_refused_at_the_next_request(
    client, store, make_user, token_for
):
    # As another worker would: straight in the store, not through this app.
    owner = make_user("student")
    lab_id = add_lab(store, owner.id, 1)
    revoked, disabled = token_for(owner), token_for(owner)
    for token in (revoked, disabled):
        assert client.get(f"/api/labs/{lab_id}", headers=bearer(token)).status_code == 200
    with store.begin() as session:
        session.execute(
            update(ApiToken)
            .where(ApiToken.token_hash == token_hash(revoked))
            .values(revoked_at=utcnow())
        )
    assert client.get(f"/api/labs/{lab_id}", headers=bearer(revoked)).status_code == 401
    assert client.get(f"/api/labs/{lab_id}", headers=bearer(disabled)).status_code == 200
    with store.begin() as session:
        session.execute(update(User).where(User.id == owner.id).values(disabled=True))
    assert client.get("/api/labs", headers=bearer(disabled)).status_code == 401


def test_the_list_counts_every_visible_lab_on_any_page(client, store, make_user, token_for):
    owner = make_user("student")
    headers = bearer(token_for(owner))
    ids = [add_lab(store, owner.id, 1) for _ in range(3)]
    add_lab(store, make_user("student").id, 1)  # another user's: not counted
    pages = [
        client.get(f"/api/labs?per_page=2&page={page}", headers=headers).get_json()
        for page in (1, 2, 3)
    ]
    assert [page["total"] for page in pages] == [3, 3, 3]
    assert [item["id"] for page in pages for item in page["items"]] == ids[::-1]
    running = client.get("/api/labs?state=running&per_page=1&page=2", headers=headers)
    assert running.get_json()["total"] == 3


def test_a_polled_answer_that_its_schema_would_change_fails_under_testing(app):
    with app.test_request_context("/api/labs/1"):
        assert polled_answer(LabOut, {"id": 1, "state": "running"}).status_code == 200
        with pytest.raises(AssertionError, match="LabOut"):
            polled_answer(LabOut, {"id": "1"})
        with pytest.raises(AssertionError, match="LabOut"):
            polled_answer(LabOut, {"id": 1, "secret": "not in the schema"})


def test_a_portal_worker_hands_the_gil_to_a_thread_back_from_postgresql_within_a_millisecond():
    # portal/gunicorn.conf.py, as a worker runs it (a fresh interpreter: 5 ms by default)
    conf = Path(__file__).resolve().parents[2] / "portal" / "gunicorn.conf.py"
    worker = (
        f"import runpy, sys; runpy.run_path({str(conf)!r})['post_worker_init'](None); "
        "print(sys.getswitchinterval())"
    )
    done = subprocess.run(
        [sys.executable, "-c", worker], capture_output=True, text=True, check=True, timeout=60
    )
    assert float(done.stdout) <= 0.001
