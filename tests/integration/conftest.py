"""Integration fixtures: run the real playbooks against real Docker and Open vSwitch.

Playbooks run exactly as an operator runs them (ansible-playbook -i inventory/ -i LAB), with
the JSON callback so tests read results and stats instead of parsing text.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from ltb.allocation import Registry
from ltb.deployed import DEFAULT_STATE_DIR, lab_dir, load_deployed_lab
from ltb.resources import find_lab_resources
from ltb.topology import load_lab

ROOT = Path(__file__).parents[2]
BIN = Path(sys.executable).parent
TOPOLOGIES = Path(__file__).parent / "topologies"


@dataclass
class PlaybookRun:
    returncode: int
    output: dict[str, Any]
    stderr: str

    @property
    def stats(self) -> dict[str, dict[str, int]]:
        return self.output.get("stats", {})

    def changed(self) -> dict[str, int]:
        return {host: s["changed"] for host, s in self.stats.items() if s["changed"]}

    def container_actions(self) -> list[str]:
        """What ltb_lab_containers did (in check mode: would do), "<node>: <action>" lines;
        and the containers' lines of remove.yml's one module run (ltb_lab_remove, by lab)."""
        actions = []
        for play in self.output.get("plays", []):
            for task in play["tasks"]:
                for result in task["hosts"].values():
                    if task["task"]["name"].startswith("container_node : "):
                        for item in [result, *result.get("results", [])]:
                            actions += item.get("actions", [])
                    for lab in (result.get("labs") or {}).values():
                        actions += lab.get("containers", []) if isinstance(lab, dict) else []
        return actions

    def failure_messages(self) -> list[str]:
        messages = []
        for play in self.output.get("plays", []):
            for task in play["tasks"]:
                for host, result in task["hosts"].items():
                    for item in [result, *result.get("results", [])]:
                        if item.get("failed"):
                            messages.append(f"{host}: {item.get('msg', item)}")
        return messages


def run_playbook(playbook: str, lab_file: Path | str, *extra: str) -> PlaybookRun:
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        PATH=f"{BIN}:{env.get('PATH', '')}",
    )
    process = subprocess.run(
        [
            BIN / "ansible-playbook",
            "-i",
            "inventory/",
            "-i",
            str(lab_file),
            f"playbooks/{playbook}",
            *extra,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        output = json.loads(process.stdout)
    except json.JSONDecodeError:
        output = {"unparsed": process.stdout}
    return PlaybookRun(process.returncode, output, process.stderr)


def deploy(lab_file: Path | str) -> PlaybookRun:
    result = run_playbook("deploy.yml", lab_file)
    assert result.returncode == 0, "\n".join(result.failure_messages()) or result.stderr
    return result


def remove(lab_file: Path | str) -> PlaybookRun:
    result = run_playbook("remove.yml", lab_file)
    assert result.returncode == 0, "\n".join(result.failure_messages()) or result.stderr
    return result


def remove_if_left(lab_file: Path | str) -> None:
    """Remove the lab of `lab_file` if an interrupted run left any of it: a module's lab must
    not start from what an earlier run left, and a remove of nothing is a whole playbook run."""
    if not find_lab_resources(load_lab(lab_file).name).empty():
        remove(lab_file)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    yield client
    client.close()


@dataclass
class RunningLab:
    path: Path
    client: docker.DockerClient

    @property
    def model(self):
        """The lab as deployed: its allocated management addresses and interface names."""
        return load_deployed_lab(load_lab(self.path).name)

    def exec(self, node: str, *argv: str) -> tuple[int, str]:
        container = self.client.containers.get(self.model.container_name(node))
        code, output = container.exec_run(list(argv))
        return code, output.decode(errors="replace")

    def ping(self, node: str, address: str) -> bool:
        return self.exec(node, "ping", "-c", "1", "-W", "2", address)[0] == 0


def wait_until(check: Callable[[], Any], timeout: float, interval: float = 0.25) -> Any:
    """Poll `check` until it returns something true; return that, or the last value. The
    checks are cheap (a docker exec, a query): a short interval keeps what a test waits for
    from waiting on the poll (1 s cost half a second per wait, minutes over a run)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def assert_no_leftovers(lab: str) -> None:
    found = find_lab_resources(lab)
    assert found.empty(), f"lab {lab} left behind: {found}"


def topology_file(directory: Path, template: str, name: str) -> Path:
    """A topology in `directory`, from a file in topologies/ with its name replaced."""
    text = (TOPOLOGIES / template).read_text().replace("name: NAME", f"name: {name}")
    path = directory / f"{name}.lab.yml"
    path.write_text(text)
    return path


@pytest.fixture
def lab_file(tmp_path) -> Iterator[Callable[[str, str], Path]]:
    """Write a topology for one test, from a file in topologies/ with its name replaced.
    Labs the test leaves undeployed give back the allocation their runs took (a deploy that
    failed its checks, a refused snapshot): only remove gives it back otherwise."""
    names: list[str] = []

    def write(template: str, name: str) -> Path:
        names.append(name)
        return topology_file(tmp_path, template, name)

    yield write
    registry = Registry(DEFAULT_STATE_DIR)
    for name in names:
        if not lab_dir(name).exists():
            registry.release(name)
