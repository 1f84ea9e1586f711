"""The lab network's one module run (ltb_lab_bridge with the lab's state): the management
subnet is checked free on the hypervisor before anything of the lab is made."""

from __future__ import annotations

import subprocess

import pytest

from tests.integration.conftest import assert_no_leftovers, run_playbook

pytestmark = pytest.mark.integration

SQUATTER = "dp-squat0"  # an interface of the test's own making, named for this test only


@pytest.fixture
def address_in_use():
    """An address of the hypervisor in 10.250.77.0/24, as another network would hold it."""
    # A veth pair: this kernel has no dummy device.
    subprocess.run(
        ["ip", "link", "add", SQUATTER, "type", "veth", "peer", "name", "dp-squat1"], check=True
    )
    try:
        subprocess.run(["ip", "addr", "add", "10.250.77.1/24", "dev", SQUATTER], check=True)
        yield "10.250.77.1/24"
    finally:
        subprocess.run(["ip", "link", "del", SQUATTER], check=True)


def test_a_management_subnet_in_use_on_the_hypervisor_fails_the_deploy_before_anything_is_made(
    lab_file, address_in_use
):
    # lab_file gives back the allocation of a lab left undeployed.
    path = lab_file("pair.lab.yml", "dp-squatted")
    path.write_text(path.read_text() + "mgmt: {ipv4_subnet: 10.250.77.0/24}\n")
    run = run_playbook("deploy.yml", path)
    assert run.returncode != 0
    messages = "\n".join(run.failure_messages())
    assert "the management subnet 10.250.77.0/24 of lab 'dp-squatted' is in use" in messages
    assert f"address {address_in_use} of {SQUATTER}" in messages
    # No bridge, port, container or state directory of the lab.
    assert_no_leftovers("dp-squatted")
