"""A job of a lab spread by its placement gives its playbook each node where the placement put
it: a real worker runs a real remove of a pair recorded on two hypervisor entries (both this
machine under two names, local connections: nothing reaches a host that does not exist), and
the topology of its run pins node b to the second entry."""

from __future__ import annotations

import pytest
import yaml

from jobs.queue import submit
from ltb.topology import parse_lab
from store.models import JobStatus
from tests.jobs.conftest import ROOT, lab_row, run_to_end

pytestmark = pytest.mark.integration

LOCAL = {
    "ansible_connection": "local",
    "ansible_python_interpreter": "{{ ansible_playbook_python }}",
    "ltb_tunnel_address": "127.0.0.1",
}


@pytest.fixture
def two_hypervisors(tmp_path):
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    hosts = {"hypervisors": {"hosts": {"localhost": LOCAL, "sp-second": LOCAL}}}
    (inventory / "hosts.yaml").write_text(yaml.safe_dump(hosts, sort_keys=False))
    (inventory / "group_vars").symlink_to(ROOT / "inventory" / "group_vars")
    return inventory


def test_a_spread_labs_job_runs_with_each_node_where_its_placement_put_it(
    store, processes, topology, two_hypervisors, job_settings
):
    lab = "sp-job"
    placement = {"a": "localhost", "b": "sp-second"}
    processes.start(
        "worker",
        LTB_HYPERVISORS=str(two_hypervisors),
        LTB_HYPERVISOR="localhost",
        LTB_KEEP_RUNS="1",
    )
    job_id = submit(
        lab,
        "remove",
        topology=topology("pair.lab.yml", lab),
        hypervisor="localhost",
        placement=placement,
    )
    recorded = lab_row(store, lab)
    assert (recorded.hypervisor, recorded.placement) == ("localhost", placement)
    job = run_to_end(store, processes, job_id)
    assert job.status == JobStatus.SUCCESSFUL, job.result
    ran = (job_settings.jobs_dir / job_id / "inventory" / f"{lab}.lab.yml").read_text()
    assert {node.name: node.hypervisor for node in parse_lab(ran, "run").nodes} == placement
