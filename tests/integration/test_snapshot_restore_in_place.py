"""Restore of a running lab from a snapshot of the same topology replaces only its nodes, in
one module run per lab (ltb_snapshot action=restore, deploy.yml not run): its network (bridge,
ports of other links) stays, every node gets back its saved state and its routes set by hand
each time (also when the same snapshot is restored twice), check mode says what would be
replaced, a topology that is not the snapshot's is refused before anything changes, and a lab
that is not running is deployed whole from the snapshot. Container nodes only: the VM paths
are in test_vm_lab.py."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator

import pytest

from ltb import module_utils
from ltb.deployed import DEFAULT_STATE_DIR, lab_dir
from ltb.snapshot import delete_snapshot
from tests.integration.conftest import (
    PlaybookRun,
    RunningLab,
    assert_no_leftovers,
    deploy,
    remove,
    run_playbook,
    topology_file,
)

pytestmark = pytest.mark.integration

LAB = "rh-restore"
SAVED = DEFAULT_STATE_DIR / "snapshots" / LAB / "s1" / "topology.lab.yml"
ROUTE = "10.77.0.0/16 via 10.201.12.2 dev eth1"
RESTORE_TASK = "Nodes of the lab are restored in place, or its restore plan is known"


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


def restore(path, *extra: str) -> PlaybookRun:
    restored = run_playbook("restore.yml", path, "-e", "snapshot=s1", *extra)
    assert restored.returncode == 0, "\n".join(restored.failure_messages()) or restored.stderr
    return restored


def restore_results(run: PlaybookRun) -> list[dict]:
    """The results of the restore module run, one per lab."""
    return [
        result
        for play in run.output.get("plays", [])
        for task in play["tasks"]
        if task["task"]["name"].endswith(RESTORE_TASK)
        for result in task["hosts"].values()
    ]


def task_names(run: PlaybookRun) -> set[str]:
    """Names of the tasks that ran (not skipped) on some host."""
    return {
        task["task"]["name"]
        for play in run.output.get("plays", [])
        for task in play["tasks"]
        if any(not result.get("skipped") for result in task["hosts"].values())
    }


def container_ids(lab: RunningLab) -> dict[str, str]:
    return {node: lab.client.containers.get(lab.model.container_name(node)).id for node in "ab"}


def test_restore_in_place_is_one_module_run_that_keeps_the_network_and_gives_back_the_state(pair):
    assert pair.exec("a", "sh", "-c", "echo saved > /root/state.txt")[0] == 0
    assert pair.exec("a", "sh", "-c", f"ip route add {ROUTE}")[0] == 0
    taken = run_playbook("snapshot.yml", pair.path, "-e", "snapshot=s1")
    assert taken.returncode == 0, "\n".join(taken.failure_messages()) or taken.stderr
    bridge = bridge_uuid(pair)

    for _ in range(2):  # the nodes run from the snapshot's images already the second time
        assert pair.exec("a", "sh", "-c", "echo changed > /root/state.txt")[0] == 0
        assert pair.exec("a", "sh", "-c", f"ip route del {ROUTE}")[0] == 0
        restored = restore(SAVED)
        (result,) = restore_results(restored)
        assert result["in_place"], result
        assert result["routes"] == {"a": 1, "b": 0}
        assert f"a: create container ltb-{LAB}.a from ltb-snapshot/{LAB}/a:s1" in result["actions"]
        # deploy.yml's plays and the separate runtime task did not run.
        ran = task_names(restored)
        assert not [name for name in ran if "lab_network" in name or "Routes set" in name], ran
        assert pair.exec("a", "cat", "/root/state.txt") == (0, "saved\n")
        assert ROUTE in pair.exec("a", "ip", "route")[1]
        assert pair.ping("a", "10.201.12.2")
        assert bridge_uuid(pair) == bridge, "the lab's network was made anew"


def test_a_deploy_after_a_restore_keeps_the_restored_nodes(pair):
    """After the test above: its nodes run the images committed by the snapshot, which the
    topology's image is the parent of. A deploy (to change a startup file, say) must not put
    the bare image back and lose what the restore gave back."""
    before = container_ids(pair)
    deployed = run_playbook("deploy.yml", pair.path)
    assert deployed.returncode == 0, "\n".join(deployed.failure_messages()) or deployed.stderr
    assert container_ids(pair) == before
    assert pair.exec("a", "cat", "/root/state.txt") == (0, "saved\n")


def test_check_mode_says_what_a_restore_in_place_would_replace_and_changes_nothing(pair):
    """After the test above, from its snapshot."""
    before = container_ids(pair)
    checked = restore(SAVED, "--check")
    (result,) = restore_results(checked)
    assert result["in_place"] and result["changed"], result
    assert f"a: replace container ltb-{LAB}.a by ltb-snapshot/{LAB}/a:s1" in result["actions"]
    assert f"remove container ltb-{LAB}.b" in result["actions"]
    assert container_ids(pair) == before


def test_a_topology_other_than_the_snapshots_is_refused_before_anything_changes(pair, tmp_path):
    """After the tests above, from their snapshot; the module's own code in this process (a
    playbook run would cost seconds), with the SHA-256 restore.yml reads on the controller."""
    before = container_ids(pair)
    other = tmp_path / "other.lab.yml"
    other.write_text(SAVED.read_text() + "# edited\n")
    snapshots = module_utils.load("ltb_snapshot")
    in_place = module_utils.load("ltb_snapshot_restore")
    request = in_place.Request(
        LAB,
        "s1",
        nodes=[],
        containers=[],
        container_params={},
        bridge=pair.model.bridge,
        ports=[],
        node_prefix=f"ltb-{LAB}.",
        topology_sha256=hashlib.sha256(other.read_bytes()).hexdigest(),
        topology_file=str(other),
    )
    where = snapshots.Settings(DEFAULT_STATE_DIR, DEFAULT_STATE_DIR / "ssh" / "id_ed25519")
    with pytest.raises(snapshots.SnapshotError) as refused:
        in_place.restore(request, where)
    message = str(refused.value)
    assert f"lab {LAB} was snapshotted as 's1' from another topology than {other}" in message
    assert f"restore with -i {SAVED}" in message
    assert container_ids(pair) == before


def test_restore_of_a_lab_that_is_not_running_deploys_it_whole(pair):
    """After the tests above, from their snapshot."""
    remove(pair.path)
    assert not lab_dir(LAB).exists()
    restored = restore(SAVED)
    (result,) = restore_results(restored)
    assert not result["in_place"] and result["why"] == f"lab {LAB} not running"
    assert pair.exec("a", "cat", "/root/state.txt") == (0, "saved\n")
    assert ROUTE in pair.exec("a", "ip", "route")[1]
    assert pair.ping("a", "10.201.12.2")
