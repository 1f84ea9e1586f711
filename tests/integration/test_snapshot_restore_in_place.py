"""Restore of a running lab from a snapshot of the same topology replaces only its nodes: its
network (bridge, ports of other links) stays, every node gets back its saved state each time
(also when the same snapshot is restored twice), and a lab that is not running is deployed
whole from the snapshot. Container nodes only: the VM paths are in test_vm_lab.py."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from ltb.deployed import DEFAULT_STATE_DIR, lab_dir
from ltb.snapshot import delete_snapshot
from tests.integration.conftest import (
    RunningLab,
    assert_no_leftovers,
    deploy,
    remove,
    run_playbook,
    topology_file,
)

pytestmark = pytest.mark.integration

LAB = "vs-restore"
SAVED = DEFAULT_STATE_DIR / "snapshots" / LAB / "s1" / "topology.lab.yml"


@pytest.fixture(scope="module")
def pair(tmp_path_factory, docker_client) -> Iterator[RunningLab]:
    path = topology_file(tmp_path_factory.mktemp("restore"), "pair.lab.yml", LAB)
    deploy(path)
    try:
        yield RunningLab(path, docker_client)
    finally:
        delete_snapshot(LAB, "s1")
        remove(path)
        assert_no_leftovers(LAB)


def bridge_uuid(lab: RunningLab) -> str:
    bridge = lab.model.bridge
    return subprocess.run(
        ["ovs-vsctl", "get", "Bridge", bridge, "_uuid"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def restore(path) -> None:
    restored = run_playbook("restore.yml", path, "-e", "snapshot=s1")
    assert restored.returncode == 0, "\n".join(restored.failure_messages()) or restored.stderr


def test_restore_in_place_keeps_the_network_and_gives_back_the_state_every_time(pair):
    assert pair.exec("a", "sh", "-c", "echo saved > /root/state.txt")[0] == 0
    taken = run_playbook("snapshot.yml", pair.path, "-e", "snapshot=s1")
    assert taken.returncode == 0, "\n".join(taken.failure_messages()) or taken.stderr
    bridge = bridge_uuid(pair)

    for _ in range(2):  # the nodes run from the snapshot's images already the second time
        assert pair.exec("a", "sh", "-c", "echo changed > /root/state.txt")[0] == 0
        restore(SAVED)
        assert pair.exec("a", "cat", "/root/state.txt") == (0, "saved\n")
        assert pair.ping("a", "10.201.12.2")
        assert bridge_uuid(pair) == bridge, "the lab's network was made anew"


def test_restore_of_a_lab_that_is_not_running_deploys_it_whole(pair):
    """After the test above, from its snapshot."""
    remove(pair.path)
    assert not lab_dir(LAB).exists()
    restore(SAVED)
    assert pair.exec("a", "cat", "/root/state.txt") == (0, "saved\n")
    assert pair.ping("a", "10.201.12.2")
