"""Labs whose names hash alike, deployed at the same moment, still get their own tag and
management subnet; a management subnet in use on the hypervisor is refused before anything is
made; remove gives the allocation back."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Interface
from pathlib import Path

import pytest
from sqlalchemy import select

from jobs.queue import submit
from ltb import model
from ltb.allocation import Registry
from ltb.deployed import DEFAULT_STATE_DIR, load_deployed_lab
from ltb.resources import find_lab_resources
from store.allocations import held
from store.models import JobStatus, Lab
from tests.integration.conftest import (
    BIN,
    ROOT,
    RunningLab,
    assert_no_leftovers,
    remove,
    run_playbook,
)
from tests.jobs.conftest import TASK_WAIT, job_ended, wait_for

pytestmark = pytest.mark.integration

# Found by brute force (about 110,000 names): the same preferred tag AND default subnet, so
# with hashing alone they would share a bridge name, interface names and a subnet.
TWINS = ("c-x87695", "c-x110923")


def registry() -> Registry:
    """The registry the inventory plugin of these runs uses (LTB_STATE_DIR or the default)."""
    return Registry(DEFAULT_STATE_DIR)


def ovs(*args: str) -> str:
    return subprocess.run(
        ["ovs-vsctl", "--timeout=10", *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def eth0_address(lab: RunningLab, node: str) -> IPv4Interface:
    code, output = lab.exec(node, "ip", "-4", "-o", "addr", "show", "dev", "eth0")
    assert code == 0, output
    return IPv4Interface(output.split()[3])


def host_pings(address: str) -> bool:
    ping = ["ping", "-c", "1", "-W", "2", address]
    return subprocess.run(ping, capture_output=True, check=False).returncode == 0


def test_the_twins_hash_to_one_tag_and_one_subnet():
    one, two = TWINS
    assert model.lab_tag(one) == model.lab_tag(two)
    assert model.default_mgmt_subnet(one) == model.default_mgmt_subnet(two)


def test_two_labs_that_hash_alike_deployed_at_once_both_run_apart(lab_file, docker_client):
    paths = [lab_file("pair.lab.yml", name) for name in TWINS]
    with ThreadPoolExecutor(2) as pool:
        try:
            runs = list(pool.map(lambda p: run_playbook("deploy.yml", p), paths))
            for run in runs:
                assert run.returncode == 0, "\n".join(run.failure_messages()) or run.stderr

            held = registry().held()
            first, second = (held[name] for name in TWINS)
            assert first.tag != second.tag
            assert not first.mgmt_subnet.overlaps(second.mgmt_subnet)
            # Whichever came first got what both prefer.
            assert model.lab_tag(TWINS[0]) in (first.tag, second.tag)

            labs = {
                name: RunningLab(path, docker_client)
                for name, path in zip(TWINS, paths, strict=True)
            }
            deployed = {name: load_deployed_lab(name) for name in TWINS}
            for name, entry in zip(TWINS, (first, second), strict=True):
                lab = deployed[name]
                assert lab.allocation == entry.allocation, "the hypervisor kept another one"
                assert ovs("get", "Bridge", lab.bridge, "external_ids:ltb-lab").strip('"') == name
                assert ovs("get", "Port", lab.mgmt_port, "tag") == str(model.MGMT_VLAN)
                for node in lab.nodes:
                    assert eth0_address(labs[name], node.name) == node.mgmt_ipv4
                    assert host_pings(str(node.mgmt_ipv4.ip))

            # Each lab's management network reaches its own nodes, never the other lab's,
            # even when a node routes the other subnet through its own gateway.
            one, two = (deployed[name] for name in TWINS)
            assert labs[TWINS[0]].ping("a", str(one.node("b").mgmt_ipv4.ip))
            assert not labs[TWINS[0]].ping("a", str(two.node("b").mgmt_ipv4.ip))
            code, output = labs[TWINS[0]].exec(
                "a", "ip", "route", "add", str(two.mgmt_subnet), "via", str(one.mgmt_gateway.ip)
            )
            assert code == 0, output
            assert not labs[TWINS[0]].ping("a", str(two.node("b").mgmt_ipv4.ip))
            assert labs[TWINS[1]].ping("b", str(two.node("a").mgmt_ipv4.ip))
            # ... whatever the host's FORWARD policy: the hypervisor forwards nothing from it.
            for lab in (one, two):
                forwarding = Path(f"/proc/sys/net/ipv4/conf/{lab.mgmt_port}/forwarding")
                assert forwarding.read_text().strip() == "0"

            # A third lab may not take a running lab's subnet; told before anything is made.
            third = lab_file("pair.lab.yml", "c-third")
            third.write_text(
                third.read_text().replace(
                    "nodes:", f"mgmt: {{ipv4_subnet: {one.mgmt_subnet}}}\nnodes:", 1
                )
            )
            listed = subprocess.run(
                [BIN / "ansible-inventory", "-i", "inventory/", "-i", third, "--list"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=False,
            )
            assert listed.returncode != 0
            assert "mgmt.ipv4_subnet" in listed.stderr
            assert f"lab {TWINS[0]!r}" in listed.stderr
            assert "c-third" not in registry().held()
        finally:
            removed = list(pool.map(lambda p: run_playbook("remove.yml", p), paths))
    for run in removed:
        assert run.returncode == 0, "\n".join(run.failure_messages()) or run.stderr
    for name in TWINS:
        assert_no_leftovers(name)
        assert name not in registry().held()


DUMMY = "c-alloc-dum"
IN_USE = "10.213.77.0/24"


@pytest.fixture
def subnet_in_use():
    """A hypervisor interface with an address, its route, and a default route of another
    table whose gateway are all in IN_USE; nothing is sent through them."""
    subprocess.run(["ip", "link", "del", DUMMY], capture_output=True, check=False)
    for argv in (
        # A veth pair: this kernel has no dummy devices.
        ["ip", "link", "add", DUMMY, "type", "veth", "peer", "name", f"{DUMMY}-p"],
        ["ip", "addr", "add", "10.213.77.1/24", "dev", DUMMY],
        ["ip", "link", "set", f"{DUMMY}-p", "up"],
        ["ip", "link", "set", DUMMY, "up"],
        ["ip", "route", "add", "default", "via", "10.213.77.254", "dev", DUMMY, "table", "4242"],
    ):
        subprocess.run(argv, check=True)
    try:
        yield
    finally:
        subprocess.run(["ip", "link", "del", DUMMY], check=False)  # its routes go with it


def test_a_given_subnet_in_use_on_the_hypervisor_is_refused_before_anything_is_made(
    lab_file, subnet_in_use
):
    name = "c-in-use"
    path = lab_file("pair.lab.yml", name)
    path.write_text(
        path.read_text().replace("nodes:", f"mgmt: {{ipv4_subnet: {IN_USE}}}\nnodes:", 1)
    )
    try:
        run = run_playbook("deploy.yml", path)
        assert run.returncode != 0
        message = "\n".join(run.failure_messages())
        assert f"management subnet {IN_USE} of lab '{name}' is in use" in message
        assert f"address 10.213.77.1/24 of {DUMMY}" in message
        assert f"route {IN_USE} dev {DUMMY}" in message
        assert "the default route's gateway 10.213.77.254" in message
        assert_no_leftovers(name)  # no container, bridge, port, interface or file
        assert str(registry().held()[name].mgmt_subnet) == IN_USE
    finally:
        # Remove of a lab that never ran: it works, and gives the allocation back.
        removed = run_playbook("remove.yml", path)
    assert removed.returncode == 0, "\n".join(removed.failure_messages()) or removed.stderr
    assert name not in registry().held()
    assert_no_leftovers(name)


def test_a_deploy_job_records_the_addresses_it_deploys_when_the_preferred_subnet_is_taken(
    store, processes, topology, tmp_path
):
    name, squatter = "c-job", "c-job-squatter"
    preferred = model.default_mgmt_subnet(name)
    nobody = model.Lab(squatter, None, (), (), preferred, model.lab_tag(squatter))
    registry().allocate(nobody, preferred)  # another lab holds what c-job prefers
    text = topology("pair.lab.yml", name)
    processes.start("worker")

    def run_to_end(job_id: str):
        return wait_for(lambda: job_ended(store, job_id), TASK_WAIT, f"job {job_id}", processes)

    try:
        deployed_job = run_to_end(submit(name, "deploy", topology=text))
        assert deployed_job.status == JobStatus.SUCCESSFUL, deployed_job.result
        deployed = load_deployed_lab(name)
        assert deployed.mgmt_subnet != preferred
        with store() as session:
            record = session.scalars(select(Lab).where(Lab.name == name)).one()
            # The lab store holds the job's allocation (store.allocations), not the file.
            assert held(record).allocation == deployed.allocation
            assert name not in registry().held()
            recorded = {node.name: node.mgmt_ipv4 for node in record.nodes}
            host_names = {i.host_name for node in record.nodes for i in node.interfaces}
        assert recorded == {node.name: str(node.mgmt_ipv4) for node in deployed.nodes}
        assert host_names == {i.host_name for node in deployed.nodes for i in node.interfaces}

        removal = run_to_end(submit(name, "remove"))
        assert removal.status == JobStatus.SUCCESSFUL, removal.result
        with store() as session:
            assert held(session.scalars(select(Lab).where(Lab.name == name)).one()) is None
        assert_no_leftovers(name)
    finally:
        registry().release(squatter)
        if not find_lab_resources(name).empty():
            path = tmp_path / f"{name}.lab.yml"
            path.write_text(text)
            remove(path)


def test_listing_the_snapshots_of_a_lab_that_is_not_deployed_keeps_no_allocation(lab_file):
    path = lab_file("pair.lab.yml", "c-listed")
    result = run_playbook("snapshot.yml", path, "-e", "snapshot_action=list")
    assert result.returncode == 0, result.failure_messages() or result.stderr
    assert "c-listed" not in registry().held(), "reading the topology kept an allocation"
    again = run_playbook("snapshot.yml", path, "-e", "snapshot_action=list")
    assert again.returncode == 0 and not again.changed(), again.changed()
