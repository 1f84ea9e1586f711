"""The portal's node information and node states of a lab that runs on another hypervisor (the
netns one, reached over SSH with its inventory's settings): read through that hypervisor, not
from this machine's Docker or state directory.

The lab (a router with FRR and a host without) is deployed there by playbooks/deploy.yml with
LTB_HYPERVISOR naming that hypervisor, and recorded in the test run's database as a running
lab placed there, as the portal's deploy job leaves it. The portal's rules (portal.labs) are
called in a request context whose LTB_HYPERVISORS is an inventory of both hypervisors
(conftest's `hypervisors_dir`).
One lab for the module; its fixture removes it, also on failure.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import yaml
from sqlalchemy import select

from ltb import capture, node_state
from ltb.allocation import Registry
from ltb.deployed import DEFAULT_STATE_DIR
from ltb.device_info import NodeUnreachable, SshReader
from portal import labs as rules
from store.db import db, session_factory
from store.labs import finish_job, request_task
from store.models import JobStatus, Lab, utcnow
from tests.app_config import portal_app
from tests.jobs.conftest import job_settings  # noqa: F401
from tests.multihost.conftest import HYPERVISOR, resources_on, run_playbook
from tests.multihost.hypervisor import PLATFORM_KEY

pytestmark = pytest.mark.integration

LAB = "di-pair"
# On conftest's netns hypervisor, shared by the multi-host tests of the session.
TOPOLOGY = f"""\
name: {LAB}
nodes:
  r1:
    interfaces: {{eth1: {{ipv4: 10.114.1.1/24}}}}
    files:
      /etc/frr/daemons: "staticd=yes\\n"
      /etc/frr/frr.conf: "ip route 10.114.9.0/24 10.114.1.2\\n"
  h1:
    interfaces: {{eth1: {{ipv4: 10.114.1.2/24}}}}
links:
  - endpoints: [r1:eth1, h1:eth1]
"""


@pytest.fixture(scope="module")
def lab(hypervisor, hypervisors_dir, job_settings, tmp_path_factory) -> Iterator[str]:  # noqa: F811
    lab_file = tmp_path_factory.mktemp("lab") / f"{LAB}.lab.yml"
    lab_file.write_text(TOPOLOGY)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LTB_HYPERVISOR", hypervisor.name)
        deployed = run_playbook("deploy.yml", hypervisors_dir / "hosts.yaml", lab_file)
        print(f"deploy took {deployed.seconds:.1f} s")
        try:
            assert deployed.returncode == 0, deployed.failures()
            # What the portal's deploy job records: a running lab placed there.
            with session_factory(job_settings.database_url).begin() as session:
                job = request_task(
                    session, LAB, "deploy", topology=TOPOLOGY, hypervisor=hypervisor.name
                )
                job.started_at = utcnow()
                finish_job(session, job, JobStatus.SUCCESSFUL, {})
            yield LAB
        finally:
            if not resources_on(hypervisor, LAB).empty():
                run_playbook("remove.yml", hypervisors_dir / "hosts.yaml", lab_file)
            Registry(DEFAULT_STATE_DIR).release(LAB)


@pytest.fixture(scope="module")
def app(job_settings, hypervisors_dir):  # noqa: F811
    return portal_app(job_settings.database_url, hypervisors_dir)


def node_info(app, node: str) -> dict:
    with app.test_request_context():
        row = db.session.scalars(select(Lab).where(Lab.name == LAB)).one()
        assert row.hypervisor == HYPERVISOR.name
        started = time.monotonic()
        info = rules.node_info(row, node)
        print(f"node info of {node} took {time.monotonic() - started:.2f} s")
        return info


def test_a_router_on_another_hypervisor_shows_its_frr_config_and_runs(lab, app):
    info = node_info(app, "r1")
    assert info["state"] == "running"
    live = info["live"]
    assert live["reachable"] is True and live["frr_running"] is True, live
    assert live["frr_version"] and "ip route 10.114.9.0/24 10.114.1.2" in live["running_config"]
    assert live["os_release"].startswith("Debian"), live


def test_a_host_on_another_hypervisor_shows_its_addresses_and_routes(lab, app):
    live = node_info(app, "h1")["live"]
    assert live["reachable"] is True and live["frr_running"] is False, live
    assert "10.114.1.2/24" in live["addresses"], live
    assert "10.114.1.0/24 dev eth1" in live["routes"], live


def test_ssh_reaches_a_node_only_its_hypervisor_reaches_through_that_hypervisor(
    lab, app, hypervisor, hypervisors_dir
):
    # The way VM nodes are read: r1's sshd on the hypervisor's management network.
    address = node_info(app, "r1")["mgmt_ipv4"].split("/")[0]
    found = yaml.safe_load((hypervisors_dir / "hosts.yaml").read_text())["hypervisors"]["hosts"]
    via = capture.ssh_hypervisor(hypervisor.name, found[hypervisor.name])
    try:
        direct = SshReader(address, PLATFORM_KEY, timeout=3).run(("hostname",))[0]
    except NodeUnreachable:
        direct = None
    assert direct != 0, "the management network is reachable from here: the test shows nothing"
    code, output = SshReader(address, PLATFORM_KEY, via=via).run(("hostname",))
    assert (code, output.decode().strip()) == (0, "r1"), output


def test_reads_of_nodes_on_another_hypervisor_share_one_ssh_connection(lab, app, hypervisor):
    # A read is several commands (docker inspect, then one exec per question): each was its
    # own SSH connection (~0.5 s of handshake each on an idle machine).
    log = hypervisor.run_dir / "sshd.log"
    before = log.read_text().count("Accepted publickey")
    for node in ("r1", "h1", "r1"):
        assert node_info(app, node)["live"]["reachable"] is True
    opened = log.read_text().count("Accepted publickey") - before
    assert opened <= 1, f"{opened} SSH connections for 3 reads"


def test_a_container_stopped_there_is_stopped_and_says_so(lab, app, hypervisor):
    # Last of the module: it stops h1 of the shared lab.
    hypervisor.docker("stop", "--time", "1", f"ltb-{LAB}.h1")
    node_state.REMOTE.clear()  # the next reading sees it at once
    info = node_info(app, "h1")
    assert info["state"] == "stopped"
    assert info["live"]["reachable"] is False
    assert "exited" in info["live"]["error"], info["live"]
    with app.test_request_context():
        row = db.session.scalars(select(Lab).where(Lab.name == LAB)).one()
        assert rules.node_states(row) == {"r1": "running", "h1": "stopped"}
