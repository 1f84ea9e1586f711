"""Multi-host fixtures: a second hypervisor of our own making (tests/multihost/hypervisor.py)
beside this machine, and the playbooks run against both, as an operator runs them with an
inventory that lists two hypervisors."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from ltb.resources import LabResources
from tests.multihost.hypervisor import NetnsHypervisor

ROOT = Path(__file__).parents[2]
BIN = Path(sys.executable).parent
# 198.18.91.0/30: apart from other tests' underlays. Two test sessions at once (engineers
# sharing a machine) each name their own, e.g. LTB_TEST_HYPERVISOR=rh1:161: a session's
# fixture takes down what an earlier one left of its hypervisor.
_NAME, _, _INDEX = os.environ.get("LTB_TEST_HYPERVISOR", "mt1:91").partition(":")
HYPERVISOR = NetnsHypervisor(_NAME, int(_INDEX))


@pytest.fixture(scope="session")
def hypervisor() -> Iterator[NetnsHypervisor]:
    HYPERVISOR.down()  # what an interrupted run left
    took = HYPERVISOR.up()
    print(f"hypervisor {HYPERVISOR.name} up: {took}")
    try:
        yield HYPERVISOR
    finally:
        HYPERVISOR.down()


@pytest.fixture(scope="session")
def hypervisors_inventory(hypervisor, tmp_path_factory) -> Path:
    """An inventory that adds the netns hypervisor to group hypervisors (this machine stays
    the first, so the lab's own hypervisor) and gives this machine its tunnel address."""
    path = tmp_path_factory.mktemp("inventory") / "hypervisors.yaml"
    hosts = {
        "localhost": {"ltb_tunnel_address": str(hypervisor.root_address.ip)},
        hypervisor.name: hypervisor.inventory_host(),
    }
    path.write_text(yaml.safe_dump({"hypervisors": {"hosts": hosts}}))
    return path


@pytest.fixture(scope="session")
def hypervisors_dir(hypervisor, tmp_path_factory) -> Path:
    """An inventory directory as LTB_HYPERVISORS names one, from which the portal and
    ltb.capture take a hypervisor's SSH settings: this machine and the netns hypervisor. Nothing
    names the platform key: its nodes accept the controller's by default, although the
    hypervisor has a state directory of its own."""
    directory = tmp_path_factory.mktemp("hypervisors")
    hosts = {
        "localhost": {"ansible_connection": "local"},
        hypervisor.name: hypervisor.inventory_host(),
    }
    (directory / "hosts.yaml").write_text(yaml.safe_dump({"hypervisors": {"hosts": hosts}}))
    return directory


@dataclasses.dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def failures(self) -> str:
        try:
            output = json.loads(self.stdout)
        except json.JSONDecodeError:
            return self.stdout[-3000:] + self.stderr[-3000:]
        messages = []
        for play in output.get("plays", []):
            for task in play["tasks"]:
                for host, result in task["hosts"].items():
                    for item in [result, *result.get("results", [])]:
                        if item.get("failed"):
                            messages.append(f"{host}: {item.get('msg', item)}")
        return "\n".join(messages) or self.stderr[-3000:]


def run_playbook(playbook: str, inventory: Path, lab_file: Path, *extra: str) -> Run:
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        PATH=f"{BIN}:{env.get('PATH', '')}",
    )
    start = time.monotonic()
    argv = [BIN / "ansible-playbook", "-i", "inventory/", "-i", inventory, "-i", lab_file]
    process = subprocess.run(
        [*map(str, argv), f"playbooks/{playbook}", *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return Run(process.returncode, process.stdout, process.stderr, time.monotonic() - start)


def resources_on(hypervisor: NetnsHypervisor, lab: str) -> LabResources:
    """What the lab has on the netns hypervisor: ltb.resources run there, with its Docker,
    Open vSwitch and state directory."""
    code = (
        "import dataclasses, json, sys; from pathlib import Path; "
        "from ltb.resources import find_lab_resources; "
        "print(json.dumps(dataclasses.asdict(find_lab_resources(sys.argv[1], Path(sys.argv[2])))))"
    )
    out = hypervisor.run(sys.executable, "-c", code, lab, hypervisor.state_dir)
    return LabResources(**json.loads(out))
