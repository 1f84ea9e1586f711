"""Deploy and remove in the cases around the happy path: two labs side by side, broken
topologies, images that are missing or crash, and what reaches a node's files."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import docker
import pytest

from ltb.topology import load_lab
from tests.integration.conftest import (
    RunningLab,
    assert_no_leftovers,
    deploy,
    remove,
    run_playbook,
    topology_file,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pair(tmp_path_factory, docker_client) -> Iterator[RunningLab]:
    """One deployed pair lab for the tests below that look at a running lab or change it in a
    way they undo (or that the others do not read): one deploy and one remove for all of them,
    and nothing left once it is removed."""
    path = topology_file(tmp_path_factory.mktemp("pair"), "pair.lab.yml", "ct-pair")
    try:
        deploy(path)
        yield RunningLab(path, docker_client)
    finally:
        remove(path)
    assert_no_leftovers("ct-pair")


def test_two_labs_with_the_same_node_names_run_side_by_side(lab_file, docker_client, request):
    first = lab_file("pair.lab.yml", "ct-side")
    try:
        deploy(first)
        # The shared pair is deployed second here (first test of the module): removing the lab
        # deployed first must leave the other running.
        second: RunningLab = request.getfixturevalue("pair")
        for lab in (RunningLab(first, docker_client), second):
            assert lab.ping("a", "10.201.12.2")
    finally:
        remove(first)
    assert_no_leftovers("ct-side")
    assert second.ping("a", "10.201.12.2"), "removing one lab broke the other"
    assert second.ping("b", "2001:db8:12::1")


def test_startup_files_arrive_verbatim_never_templated(pair):
    assert pair.exec("a", "cat", "/etc/ltb/template.txt") == (0, "{{ lookup('pipe', 'id') }}")


def test_changed_startup_files_reach_a_running_node_and_then_nothing_changes(pair):
    path = pair.path
    path.write_text(
        path.read_text().replace(
            "    files:\n",
            '    files:\n      /opt/new/deep/note.txt: "hello\\n"\n',
        )
    )
    changed = deploy(path).container_actions()
    # The node whose files changed, only that file; nothing of b.
    assert changed == ["a: write /opt/new/deep/note.txt"], changed
    assert pair.exec("a", "cat", "/opt/new/deep/note.txt") == (0, "hello\n")
    modes = pair.exec("a", "stat", "-c", "%a %U", "/opt/new/deep", "/opt/new/deep/note.txt")
    assert modes == (0, "755 root\n644 root\n")
    # The platform key's file keeps its own mode.
    assert pair.exec("a", "stat", "-c", "%a", "/root/.ssh/authorized_keys") == (0, "600\n")
    assert deploy(path).changed() == {}


def test_bad_topology_is_rejected_with_every_place_before_anything_is_created(tmp_path):
    path = tmp_path / "bad.lab.yml"
    path.write_text(
        "name: bad-one\nnodes:\n  r1: {kind: router}\nlinks:\n  - endpoints: [r1:eth1, r9:eth1]\n"
    )
    result = run_playbook("deploy.yml", path)
    assert result.returncode != 0
    assert "nodes.r1.kind: unknown node kind 'router'" in result.stderr + str(result.output)
    assert "links[0].endpoints[1]: node 'r9' is not defined" in result.stderr + str(result.output)
    assert_no_leftovers("bad-one")


def test_missing_image_fails_before_anything_is_created(lab_file):
    path = lab_file("pair.lab.yml", "no-image")
    path.write_text(path.read_text().replace("  b:\n", "  b:\n    image: ltb-test/absent:1\n"))
    result = run_playbook("deploy.yml", path)
    assert result.returncode != 0
    assert any(
        "image 'ltb-test/absent:1' is not on hypervisor" in m for m in result.failure_messages()
    )
    assert_no_leftovers("no-image")


@pytest.fixture
def crashing_image(docker_client):
    """An image that exists but whose entry point exits at once."""
    container = docker_client.containers.create("ltb/node:latest", entrypoint=["/bin/false"])
    image = container.commit("ltb-test/crashes", "1")
    container.remove()
    yield "ltb-test/crashes:1"
    docker_client.images.remove(image.id, force=True)


def test_deploy_failing_midway_is_removed_completely(lab_file, docker_client, crashing_image):
    path = lab_file("pair.lab.yml", "midway")
    path.write_text(path.read_text().replace("  b:\n", f"  b:\n    image: {crashing_image}\n"))
    result = run_playbook("deploy.yml", path)
    assert result.returncode != 0
    messages = result.failure_messages()
    assert any("stopped right after it started" in m for m in messages), messages
    lab = load_lab(path)
    # Node a was built before b failed: the lab is half-built, as after a real failure.
    assert docker_client.containers.get(lab.container_name("a")).status == "running"
    remove(path)
    assert_no_leftovers("midway")
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(lab.container_name("b"))


@pytest.fixture
def hypervisor_address():
    """An address of the hypervisor itself, on an interface that the test owns (a veth: this
    kernel has no dummy interfaces)."""
    subprocess.run(
        ["ip", "link", "add", "ltbtest0", "type", "veth", "peer", "name", "ltbtest1"], check=True
    )
    # A /24 keeps any answer to 10.202.0.0/24 on this machine, on ltbtest0.
    subprocess.run(["ip", "addr", "add", "10.202.0.1/24", "dev", "ltbtest0"], check=True)
    subprocess.run(["ip", "link", "set", "ltbtest0", "up"], check=True)
    yield "10.202.0.1"
    subprocess.run(["ip", "link", "del", "ltbtest0"], check=True)


def test_lab_link_does_not_reach_the_hypervisor(pair, hypervisor_address):
    # A node that puts itself in the hypervisor's subnet still gets no answer over a link.
    assert pair.exec("a", "ip", "addr", "add", "10.202.0.2/24", "dev", "eth1")[0] == 0
    try:
        assert not pair.ping("a", hypervisor_address)
        _, neighbour = pair.exec("a", "ip", "neigh", "show", hypervisor_address, "dev", "eth1")
        assert "lladdr" not in neighbour, f"the hypervisor answered ARP on a lab link: {neighbour}"
        assert pair.ping("a", "10.201.12.2"), "the link itself must still work"
    finally:
        pair.exec("a", "ip", "addr", "del", "10.202.0.2/24", "dev", "eth1")
