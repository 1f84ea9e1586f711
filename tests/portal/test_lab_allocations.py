"""A lab started in the portal whose topology gives a management subnet that another lab
holds is refused (422) before anything is queued; the answer names the lab that holds it only
to a user who may see that lab, and says "another lab" to anyone else."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from jobs.queue import cancel
from store.models import Lab, Role, Template, TemplateVersion, Visibility, utcnow
from tests.integration.conftest import TOPOLOGIES
from tests.jobs.conftest import redis_db  # noqa: F401
from tests.portal.conftest import bearer

pytestmark = pytest.mark.integration

SUBNET = "10.234.0.0/16"


def given_subnet_template(store, owner_id: int, subnet: str) -> int:
    topology = (TOPOLOGIES / "pair.lab.yml").read_text()
    topology = topology.replace("nodes:", f"mgmt: {{ipv4_subnet: {subnet}}}\nnodes:", 1)
    now = utcnow()
    with store() as session:
        row = Template(
            owner_id=owner_id,
            name=f"al-{uuid.uuid4().hex[:4]}",
            visibility=Visibility.PUBLIC.value,
            created_at=now,
            updated_at=now,
        )
        row.versions.append(
            TemplateVersion(number=1, topology=topology, created_at=now, created_by_id=owner_id)
        )
        session.add(row)
        session.commit()
        return row.id


def test_a_given_subnet_another_lab_holds_is_refused_naming_it_only_to_who_may_see_it(
    client,
    store,
    make_user,
    token_for,
    redis_db,  # noqa: F811
):
    teacher = make_user(Role.TEACHER)
    first = given_subnet_template(store, teacher.id, SUBNET)
    overlapping = given_subnet_template(store, teacher.id, "10.234.5.0/24")
    holder, other, admin = (
        bearer(token_for(user)) for user in (make_user(), make_user(), make_user(Role.ADMIN))
    )
    started = client.post("/api/labs", json={"template_id": first}, headers=holder)
    assert started.status_code == 202, started.get_json()
    lab, job = started.get_json()["lab"]["name"], started.get_json()["job"]["id"]
    try:
        with store() as session:
            labs_before = session.scalar(select(func.count(Lab.id)))
        refused = client.post("/api/labs", json={"template_id": overlapping}, headers=other)
        assert refused.status_code == 422, refused.get_json()
        message = refused.get_json()["error"]["message"]
        assert f"overlaps {SUBNET}, the management subnet of another lab" in message
        assert lab not in message

        named = client.post("/api/labs", json={"template_id": overlapping}, headers=admin)
        assert named.status_code == 422, named.get_json()
        assert f"the management subnet of lab {lab!r}" in named.get_json()["error"]["message"]
        with store() as session:
            assert session.scalar(select(func.count(Lab.id))) == labs_before, "a lab was kept"
    finally:
        assert cancel(job) == "canceled"  # never started: the lab holds nothing any more
    with store() as session:
        assert session.scalars(select(Lab.tag).where(Lab.name == lab)).one() is None
