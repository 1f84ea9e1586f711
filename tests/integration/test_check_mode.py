"""Check mode of deploy and remove (`ansible-playbook --check --diff`): it reports what would
change, from the same want/have as a real run, and changes nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ltb.allocation import Registry
from ltb.deployed import DEFAULT_STATE_DIR
from ltb.topology import load_lab
from tests.integration.conftest import (
    PlaybookRun,
    RunningLab,
    assert_no_leftovers,
    deploy,
    remove,
    run_playbook,
    topology_file,
    wait_until,
)

pytestmark = pytest.mark.integration

CHECK = ("--check", "--diff")


def checked(playbook: str, path) -> PlaybookRun:
    run = run_playbook(playbook, path, *CHECK)
    assert run.returncode == 0, "\n".join(run.failure_messages()) or run.stderr
    return run


def test_check_mode_of_a_lab_not_deployed_reports_its_nodes_and_creates_nothing(tmp_path):
    path = topology_file(tmp_path, "pair.lab.yml", "dp-check-new")
    name = load_lab(path).name
    try:
        run = checked("deploy.yml", path)
        actions = run.container_actions()
        for node in ("a", "b"):
            assert f"{node}: create container ltb-{name}.{node} from ltb/node:latest" in actions
            veth = f"<-> {node}:eth1"
            assert any(a.startswith(f"{node}: create ") and veth in a for a in actions), actions
        assert "a: write /etc/ltb/template.txt" in actions, actions
        assert run.changed(), "check mode reported no change for a lab that is not deployed"
        # Nothing made: no container, bridge, port, veth, state directory, and no allocation
        # recorded in the controller's registry (the inventory plugin knows the run checks).
        assert_no_leftovers(name)
        assert name not in Registry(DEFAULT_STATE_DIR).held()
    finally:
        Registry(DEFAULT_STATE_DIR).release(name)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory, docker_client) -> Iterator[RunningLab]:
    path = topology_file(tmp_path_factory.mktemp("check"), "pair.lab.yml", "dp-check")
    try:
        deploy(path)
        yield RunningLab(path, docker_client)
    finally:
        remove(path)
    assert_no_leftovers("dp-check")


def test_check_mode_of_a_deployed_lab_reports_no_change(deployed):
    run = checked("deploy.yml", deployed.path)
    assert run.container_actions() == []
    assert run.changed() == {}


def test_check_mode_reports_the_one_node_whose_container_was_removed_by_hand(deployed):
    container = deployed.client.containers.get(deployed.model.container_name("b"))
    container.remove(force=True)
    run = checked("deploy.yml", deployed.path)
    actions = run.container_actions()
    assert "b: create container ltb-dp-check.b from ltb/node:latest" in actions, actions
    assert not [a for a in actions if a.startswith("a: ")], actions
    # Still gone: check mode made nothing.
    assert not deployed.client.containers.list(all=True, filters={"name": container.name})
    # A real deploy brings it back, with its link (its new host ends become ports afresh).
    deploy(deployed.path)
    assert wait_until(lambda: deployed.ping("a", "10.201.12.2"), timeout=10)


def test_check_mode_of_remove_reports_the_containers_and_removes_nothing(deployed):
    run = checked("remove.yml", deployed.path)
    actions = run.container_actions()
    assert sorted(actions) == [
        "remove container ltb-dp-check.a",
        "remove container ltb-dp-check.b",
    ], actions
    assert len(deployed.client.containers.list(filters={"label": "ltb.lab=dp-check"})) == 2
    assert deployed.ping("a", "10.201.12.2")
