"""The inventory plugin's cache: a topology read again unchanged (a remove after its deploy) is
taken from Ansible's inventory cache without importing the lab model or validating again; a
changed file, a released allocation or a bad file are read as without a cache.

Each test runs the real `ansible-inventory` with the project's ansible.cfg and its own state
directory (the registry and the cache in it). Python's import log (PYTHONPROFILEIMPORTTIME)
says whether the run imported ltb.topology, i.e. read the topology."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
BIN = Path(sys.executable).parent
PAIR = """\
name: ic-pair
nodes:
  a: {interfaces: {eth1: {ipv4: 10.0.1.1/30}}}
  b: {interfaces: {eth1: {ipv4: 10.0.1.2/30}}}
links:
  - endpoints: [a:eth1, b:eth1]
"""


class Run:
    def __init__(self, shown: subprocess.CompletedProcess[str]):
        self.returncode = shown.returncode
        self.stderr = shown.stderr
        self.inventory = json.loads(shown.stdout) if shown.returncode == 0 else None
        # The import log's lines, e.g. "import time:  123 |  4567 |   ltb.topology".
        self.imported = {line.rsplit("|", 1)[-1].strip() for line in shown.stderr.splitlines()}

    @property
    def read_topology(self) -> bool:
        return "ltb.topology" in self.imported

    @property
    def messages(self) -> str:
        kept = [line for line in self.stderr.splitlines() if not line.startswith("import time:")]
        return " ".join(" ".join(kept).split())


@pytest.fixture
def show(tmp_path):
    state = tmp_path / "state"

    def show(topology: Path, **env: str) -> Run:
        shown = subprocess.run(
            [BIN / "ansible-inventory", "-i", "inventory/", "-i", topology, "--list"],
            cwd=ROOT,
            env={
                **os.environ,
                "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
                "LTB_STATE_DIR": str(state),
                "PYTHONPROFILEIMPORTTIME": "1",
                **env,
            },
            capture_output=True,
            text=True,
            check=False,
        )
        return Run(shown)

    show.state = state
    return show


@pytest.fixture
def topology(tmp_path):
    path = tmp_path / "ic-pair.lab.yml"
    path.write_text(PAIR)
    return path


def test_an_unchanged_topology_read_again_comes_from_the_cache_without_the_model(show, topology):
    first = show(topology)
    again = show(topology)
    assert first.returncode == again.returncode == 0, first.messages + again.messages
    assert first.read_topology
    assert not again.read_topology, "the second read imported ltb.topology: no cache hit"
    assert again.inventory == first.inventory
    assert sorted(again.inventory["lab_ic_pair"]["hosts"]) == ["a", "b"]
    # The same as a run without the cache.
    assert show(topology, ANSIBLE_INVENTORY_CACHE="false").inventory == first.inventory


def test_a_changed_topology_is_read_again(show, topology):
    assert show(topology).returncode == 0
    topology.write_text(PAIR.replace("  b: {", "  c: {}\n  b: {"))
    changed = show(topology)
    assert changed.returncode == 0, changed.messages
    assert changed.read_topology
    assert sorted(changed.inventory["lab_ic_pair"]["hosts"]) == ["a", "b", "c"]


def test_a_bad_topology_fails_with_its_errors_also_where_a_good_one_was_cached(show, topology):
    assert show(topology).returncode == 0
    topology.write_text(PAIR.replace("[a:eth1, b:eth1]", "[a:eth1, r9:eth1]"))
    bad = show(topology)
    assert bad.returncode != 0
    assert "links[0].endpoints[1]: node 'r9' is not defined" in bad.messages
    assert bad.messages == show(topology, ANSIBLE_INVENTORY_CACHE="false").messages


def test_a_released_allocation_is_allocated_again_not_taken_from_the_cache(show, topology):
    first = show(topology)
    registry = show.state / "allocations.json"
    held = json.loads(registry.read_text())["labs"]["ic-pair"]
    registry.write_text(json.dumps({"labs": {}}))  # what remove's release leaves
    again = show(topology)
    assert again.returncode == 0, again.messages
    assert again.read_topology
    assert json.loads(registry.read_text())["labs"]["ic-pair"] == held
    assert again.inventory == first.inventory
