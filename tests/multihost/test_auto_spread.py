"""A lab that fits neither hypervisor alone is spread automatically: booked through the
portal's placement (portal.capacity.place) on two hypervisors of 1 CPU each, a 3-node lab of
0.5 CPU per node goes 2 + 1, its nodes recorded with the lab in the store; the playbook its
deploy job runs, given the topology the job gives it (store.labs.placed_topology) and the
lab's allocation, puts each node where it was placed, a ping crosses the tunnel, the portal
reads each node's state where it runs, and remove leaves nothing on either hypervisor."""

from __future__ import annotations

import subprocess
from datetime import timedelta

import pytest
import yaml

from ltb.allocation import allocation_text
from ltb.resources import find_lab_resources
from ltb.topology import parse_lab
from portal.capacity import place
from portal.labs import node_states
from store import allocations
from store.capacity import bookings
from store.db import db
from store.labs import placed_topology, request_task
from store.models import Lab, utcnow
from tests.app_config import portal_app
from tests.jobs.conftest import job_settings  # noqa: F401
from tests.multihost.conftest import resources_on, run_playbook

pytestmark = pytest.mark.integration

LAB = "sp-auto"
GIB = 1024**3
TOPOLOGY = f"""\
name: {LAB}
nodes:
  a:
    resources: {{cpus: 0.5, memory: 256MiB}}
    interfaces:
      eth1: {{ipv4: 10.91.1.1/24}}
  b:
    resources: {{cpus: 0.5, memory: 256MiB}}
    interfaces:
      eth1: {{ipv4: 10.91.1.2/24}}
      eth2: {{ipv4: 10.91.2.2/24}}
  c:
    resources: {{cpus: 0.5, memory: 256MiB}}
    interfaces:
      eth1: {{ipv4: 10.91.2.3/24}}
links:
  - endpoints: [a:eth1, b:eth1]
  - endpoints: [b:eth2, c:eth1]
"""


@pytest.fixture
def small_hypervisors(hypervisor, tmp_path):
    """LTB_HYPERVISORS of the portal: this machine and the netns hypervisor, 1 CPU each."""
    small = {"ltb_capacity_cpus": 1, "ltb_capacity_memory": 8 * GIB}
    hosts = {
        "localhost": {"ansible_connection": "local"} | small,
        hypervisor.name: hypervisor.inventory_host() | small,
    }
    (tmp_path / "hosts.yaml").write_text(
        yaml.safe_dump({"hypervisors": {"hosts": hosts}}, sort_keys=False)
    )
    return tmp_path


def names_of_containers(run) -> list[str]:
    return sorted(run("ps", "--filter", f"label=ltb.lab={LAB}", "--format", "{{.Names}}").split())


def docker_here(*argv: str) -> str:
    return subprocess.run(["docker", *argv], capture_output=True, text=True, check=True).stdout


def test_a_lab_no_hypervisor_has_room_for_is_spread_deployed_and_removed(
    hypervisor,
    hypervisors_inventory,
    small_hypervisors,
    job_settings,  # noqa: F811
    monkeypatch,
    tmp_path,
):
    app = portal_app(job_settings.database_url, small_hypervisors)
    with app.app_context():
        now = utcnow()
        placed = place(parse_lab(TOPOLOGY, "lab"), now, now + timedelta(hours=1))
        # Linked nodes together as far as they fit: one link (b-c) crosses.
        assert placed.hypervisor == "localhost"
        assert placed.nodes == {"a": "localhost", "b": "localhost", "c": hypervisor.name}
        request_task(
            db.session,
            LAB,
            "deploy",
            topology=TOPOLOGY,
            hypervisor=placed.hypervisor,
            placement=placed.nodes,
        )
        db.session.commit()
        lab = db.session.query(Lab).filter_by(name=LAB).one()
        assert lab.placement == placed.nodes
        # Each part holds its own hypervisor.
        (held,) = bookings(db.session, now, now + timedelta(hours=1), now=now)
        assert dict((h, n.cpus) for h, n in held.parts) == {"localhost": 1.0, hypervisor.name: 0.5}
        # What the deploy job gives its playbook (jobs.tasks.run_task).
        topology = placed_topology(lab.topology, lab.placement)
        allocation = allocation_text(allocations.ensure(db.session, lab))
        db.session.commit()
    lab_file = tmp_path / f"{LAB}.lab.yml"
    lab_file.write_text(topology)
    monkeypatch.setenv("LTB_HYPERVISOR", placed.hypervisor)
    monkeypatch.setenv("LTB_ALLOCATION", allocation)
    try:
        deployed = run_playbook("deploy.yml", hypervisors_inventory, lab_file)
        print(f"deploy took {deployed.seconds:.1f} s")
        assert deployed.returncode == 0, deployed.failures()
        assert names_of_containers(docker_here) == [f"ltb-{LAB}.a", f"ltb-{LAB}.b"]
        assert names_of_containers(hypervisor.docker) == [f"ltb-{LAB}.c"]
        ping = ["docker", "exec", f"ltb-{LAB}.b", "ping", "-c", "2", "-W", "2", "10.91.2.3"]
        crossed = subprocess.run(ping, capture_output=True, text=True, check=False)
        assert crossed.returncode == 0, crossed.stdout + crossed.stderr
        # The portal reads each node where it runs, also right after the deploy when this
        # process read both hypervisors before it (earlier tests): the deploy job's end
        # (store.labs.finish_job) moves the lab's updated_at.
        with app.app_context():
            lab = db.session.query(Lab).filter_by(name=LAB).one()
            lab.updated_at = utcnow()
            db.session.commit()
            assert node_states(lab) == dict.fromkeys("abc", "running")

        removed = run_playbook("remove.yml", hypervisors_inventory, lab_file)
        print(f"remove took {removed.seconds:.1f} s")
        assert removed.returncode == 0, removed.failures()
        assert find_lab_resources(LAB).empty(), find_lab_resources(LAB)
        assert resources_on(hypervisor, LAB).empty(), resources_on(hypervisor, LAB)
    finally:
        if not find_lab_resources(LAB).empty() or not resources_on(hypervisor, LAB).empty():
            run_playbook("remove.yml", hypervisors_inventory, lab_file)
