"""A lab spread over two hypervisors behaves as on one: r1 runs on this machine, r2 and r3 on a
hypervisor of our own making (a network namespace with its own Docker, Open vSwitch and sshd,
driven over SSH); links r1-r2 and r3-r1 cross a VXLAN tunnel between the two lab bridges.
One deployed lab for the module; the last test removes it."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from ltb.allocation import Registry
from ltb.deployed import DEFAULT_STATE_DIR, load_deployed_lab
from ltb.resources import find_lab_resources
from store.db import session_factory
from store.labs import finish_job, request_task
from store.models import JobStatus, utcnow
from tests.app_config import portal_app
from tests.jobs.conftest import job_settings  # noqa: F401
from tests.multihost.conftest import BIN, resources_on, run_playbook
from tests.portal.conftest import new_user

pytestmark = pytest.mark.integration

LAB = "mt-spread"
TEMPLATE = Path(__file__).parent / "spread-triangle.lab.yml"
ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def lab_file(hypervisor, tmp_path_factory) -> Path:
    text = TEMPLATE.read_text().replace("name: NAME", f"name: {LAB}")
    path = tmp_path_factory.mktemp("lab") / f"{LAB}.lab.yml"
    path.write_text(text.replace("hypervisor: HV", f"hypervisor: {hypervisor.name}"))
    return path


@pytest.fixture(scope="module")
def spread_lab(hypervisor, hypervisors_inventory, lab_file):
    deployed = run_playbook("deploy.yml", hypervisors_inventory, lab_file)
    print(f"deploy took {deployed.seconds:.1f} s")
    try:
        assert deployed.returncode == 0, deployed.failures()
        yield load_deployed_lab(LAB)
    finally:
        if not find_lab_resources(LAB).empty() or not resources_on(hypervisor, LAB).empty():
            run_playbook("remove.yml", hypervisors_inventory, lab_file)
        Registry(DEFAULT_STATE_DIR).release(LAB)


def docker_exec(hypervisor, where: str, node: str, *argv: str) -> subprocess.CompletedProcess:
    """Run a command in a node, through the Docker daemon of the hypervisor it runs on."""
    command = ["docker", "exec", f"ltb-{LAB}.{node}", *argv]
    if where == "here":
        return subprocess.run(command, capture_output=True, text=True, check=False)
    return subprocess.run(
        command, capture_output=True, text=True, check=False, env={**hypervisor.env}
    )


def full_neighbours(hypervisor, where: str, node: str) -> set[str]:
    shown = docker_exec(hypervisor, where, node, "vtysh", "-c", "show ip ospf neighbor json")
    if shown.returncode != 0:
        return set()
    neighbours = json.loads(shown.stdout or "{}").get("neighbors", {})
    return {
        router
        for router, sessions in neighbours.items()
        for session in sessions
        if session.get("state", session.get("nbrState", "")).startswith("Full")
    }


def wait_for(check, timeout: float):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(1)


def test_each_node_runs_on_the_hypervisor_its_topology_names(spread_lab, hypervisor):
    here = subprocess.run(
        ["docker", "ps", "--filter", f"label=ltb.lab={LAB}", "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    there = hypervisor.docker(
        "ps", "--filter", f"label=ltb.lab={LAB}", "--format", "{{.Names}}"
    ).split()
    assert sorted(here) == [f"ltb-{LAB}.r1"]
    assert sorted(there) == [f"ltb-{LAB}.r2", f"ltb-{LAB}.r3"]


def test_ping_crosses_the_tunnel_both_ways(spread_lab, hypervisor):
    assert (
        docker_exec(hypervisor, "here", "r1", "ping", "-c", "2", "-W", "2", "10.0.12.2").returncode
        == 0
    )
    assert (
        docker_exec(hypervisor, "there", "r3", "ping", "-c", "2", "-W", "2", "10.0.13.1").returncode
        == 0
    )


def test_ospf_adjacencies_across_the_tunnel_are_full(spread_lab, hypervisor):
    assert wait_for(
        lambda: full_neighbours(hypervisor, "here", "r1") == {"10.255.0.2", "10.255.0.3"}, 30
    ), full_neighbours(hypervisor, "here", "r1")
    assert "10.255.0.1" in full_neighbours(hypervisor, "there", "r2")
    # Routes learnt across the tunnel carry traffic: r1 reaches r2's loopback.
    assert wait_for(
        lambda: (
            docker_exec(
                hypervisor, "here", "r1", "ping", "-c", "1", "-W", "2", "10.255.0.2"
            ).returncode
            == 0
        ),
        15,
    )


def test_capture_on_the_far_side_of_a_cross_hypervisor_link_shows_ospf_and_icmp(
    spread_lab, hypervisor, tmp_path
):
    # r2's end of link r1-r2, on the netns hypervisor: what r1 sends must have crossed.
    port = spread_lab.node("r2").interface("eth1").host_name
    pcap = tmp_path / "r1-r2.pcap"
    capture = subprocess.Popen(
        hypervisor.netns_argv("tcpdump", "-n", "-U", "-Z", "root", "-i", port, "-w", pcap),
        stderr=subprocess.PIPE,
    )
    try:
        time.sleep(1)
        docker_exec(hypervisor, "here", "r1", "ping", "-c", "3", "-i", "0.3", "10.0.12.2")
        time.sleep(1.5)  # an OSPF hello every second
    finally:
        capture.terminate()
        capture.wait(timeout=10)
    read = subprocess.run(
        ["tcpdump", "-n", "-r", pcap], capture_output=True, text=True, check=True
    ).stdout
    assert "10.0.12.1 > 224.0.0.5: OSPF" in read, read
    assert "10.0.12.1 > 10.0.12.2: ICMP echo request" in read, read


def test_a_portal_capture_of_a_link_between_hypervisors_downloads_its_packets(
    spread_lab,
    hypervisor,
    hypervisors_dir,
    lab_file,
    job_settings,  # noqa: F811
    tmp_path,
):
    # The HTTP endpoint, as a user downloads it: r2's end of link r1-r2 is on the netns
    # hypervisor, captured there over SSH while r1 (here) pings across the tunnel.
    store = session_factory(job_settings.database_url)
    owner = new_user(store, "student", prefix="rh-")
    with store.begin() as session:  # what the portal's deploy job records
        job = request_task(session, LAB, "deploy", topology=lab_file.read_text(), owner_id=owner.id)
        job.started_at = utcnow()
        finish_job(session, job, JobStatus.SUCCESSFUL, {})
        lab_id = job.lab_id
    app = portal_app(job_settings.database_url, hypervisors_dir)
    client = app.test_client()
    logged_in = client.post(
        "/api/auth/login", json={"username": owner.username, "password": owner.password}
    )
    assert logged_in.status_code == 200, logged_in.get_json()
    ping = ["docker", "exec", f"ltb-{LAB}.r1", "ping", "-c", "25", "-i", "0.2", "10.0.12.2"]
    pinger = subprocess.Popen(ping, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        started = time.monotonic()
        answer = client.get(f"/api/labs/{lab_id}/capture?endpoint=r2:eth1&seconds=3&packets=200")
        assert answer.status_code == 200, answer.get_data()[:500]
        (tmp_path / "r1-r2.pcap").write_bytes(answer.get_data())
        print(f"portal capture took {time.monotonic() - started:.1f} s")
    finally:
        pinger.kill()
        pinger.wait()
    read = subprocess.run(
        ["tcpdump", "-n", "-r", tmp_path / "r1-r2.pcap"], capture_output=True, text=True, check=True
    ).stdout
    assert "10.0.12.1 > 10.0.12.2: ICMP echo request" in read, read
    assert "10.0.12.2 > 10.0.12.1: ICMP echo reply" in read, read


def test_the_tunnel_module_in_check_mode_reports_only_a_lost_flood_entry(
    spread_lab, hypervisor, hypervisors_inventory, lab_file
):
    device, remote = spread_lab.tunnel_device, str(hypervisor.address.ip)
    network = "ltb_labs_here[0]"
    arguments = {
        "lab": f"{{{{ {network}.lab }}}}",
        "bridge": f"{{{{ {network}.bridge }}}}",
        "tunnel": f"{{{{ {network}.tunnel }}}}",
    }
    argv = [
        str(BIN / "ansible"), "localhost", "-i", "inventory/", "-i", str(hypervisors_inventory),
        "-i", str(lab_file), "--check", "-m", "ltb_lab_tunnels", "-a", json.dumps(arguments),
    ]  # fmt: skip
    env = {
        **os.environ,
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
    }
    flood = ["00:00:00:00:00:00", "dev", device, "dst", remote]
    subprocess.run(["bridge", "fdb", "del", *flood], check=True)
    try:
        run = subprocess.run(
            argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=120
        )
    finally:
        subprocess.run(["bridge", "fdb", "append", *flood], check=True)
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(run.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    # All else of the tunnel is as it must be: the one change is the lost entry.
    assert result["actions"] == [f"flood to {remote}"], result


def test_a_restore_missing_a_part_on_one_hypervisor_changes_nothing_on_the_other(
    spread_lab, hypervisor, hypervisors_inventory, lab_file
):
    """The restore in place checks and acts in one module run per hypervisor: a spread lab's
    snapshot is checked on every hypervisor before any of them restores its part."""
    taken = run_playbook("snapshot.yml", hypervisors_inventory, lab_file, "-e", "snapshot=s1")
    try:
        assert taken.returncode == 0, taken.failures()
        hypervisor.docker("rmi", f"ltb-snapshot/{LAB}/r2:s1")
        here = docker_id(f"ltb-{LAB}.r1")
        restored = run_playbook("restore.yml", hypervisors_inventory, lab_file, "-e", "snapshot=s1")
        assert restored.returncode != 0
        assert "r2" in restored.failures(), restored.failures()
        assert docker_id(f"ltb-{LAB}.r1") == here, "r1 was restored though r2's image is gone"
    finally:
        run_playbook(
            "snapshot.yml",
            hypervisors_inventory,
            lab_file,
            "-e",
            "snapshot=s1",
            "-e",
            "snapshot_action=delete",
        )


def docker_id(container: str) -> str:
    return subprocess.run(
        ["docker", "inspect", "--format", "{{.Id}}", container],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_remove_leaves_nothing_on_either_hypervisor(
    spread_lab, hypervisor, hypervisors_inventory, lab_file
):
    removed = run_playbook("remove.yml", hypervisors_inventory, lab_file)
    print(f"remove took {removed.seconds:.1f} s")
    assert removed.returncode == 0, removed.failures()
    assert find_lab_resources(LAB).empty(), find_lab_resources(LAB)
    assert resources_on(hypervisor, LAB).empty(), resources_on(hypervisor, LAB)
    tunnel = spread_lab.tunnel_device
    assert tunnel not in subprocess.run(["ip", "link"], capture_output=True, text=True).stdout
    assert tunnel not in hypervisor.run("ip", "link")
