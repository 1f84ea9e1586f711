"""Snapshots that fail or are killed leave the lab as it was and nothing partial: a run killed
with SIGKILL halfway (its leftovers listed by `ltb resources`, then cleaned by the next run),
one cancelled with SIGTERM (nothing left at all). A VM whose saved memory cannot be resumed is
tested on the VM lab of tests/integration/test_vm_lab.py (a VM boot costs a minute)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from ltb import snapshot as snapshots
from tests.integration.conftest import (
    BIN,
    ROOT,
    RunningLab,
    assert_no_leftovers,
    deploy,
    remove,
    run_playbook,
    wait_until,
)

pytestmark = pytest.mark.integration

PAIR = """name: {name}
nodes:
  a: {{interfaces: {{eth1: {{ipv4: 10.206.1.1/24}}}}}}
  b: {{interfaces: {{eth1: {{ipv4: 10.206.1.2/24}}}}}}
links:
  - endpoints: [a:eth1, b:eth1]
"""
LAB = "d-snap"


def _start_playbook(playbook: str, lab: Path, *extra: str) -> subprocess.Popen:
    """ansible-playbook as an operator starts it, in a process group of its own."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    env["PATH"] = f"{BIN}:{env.get('PATH', '')}"
    return subprocess.Popen(
        [BIN / "ansible-playbook", "-i", "inventory/", "-i", str(lab), playbook, *extra],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            tree.setdefault(parent, []).append(int(entry.name))
    return tree


def _process_tree(root: int) -> list[int]:
    tree, found, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += tree.get(pid, [])
    return found


def _snapshot_process(root: int) -> int | None:
    """The process that takes the snapshot: for this machine's hypervisor, the Ansible worker
    (a fork of ansible-playbook, with its command line) that runs the ltb_snapshot module's
    code in-process (plugins/action/ltb_snapshot.py)."""
    command = Path(f"/proc/{root}/cmdline").read_bytes()
    for pid in _children().get(root, []):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/cmdline").read_bytes() == command:
                return pid
    return None


def _wait_until_committing(client: docker.DockerClient, container: str) -> bool:
    """True once Docker pauses the container to commit it (the snapshot is halfway)."""
    return wait_until(
        lambda: client.api.inspect_container(container)["State"]["Paused"], 60, interval=0.05
    )


def _partial_images(client: docker.DockerClient, lab: str) -> list[str]:
    found = client.images.list(filters={"reference": f"{snapshots.PARTIAL_REPOSITORY}/{lab}/*"})
    return [tag for image in found for tag in image.tags]


def _resources_line(lab: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "ltb", "resources", lab],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return next(line for line in out.splitlines() if line.startswith("snapshot_leftovers:"))


def _assert_lab_runs(running: RunningLab) -> None:
    for node in ("a", "b"):
        state = running.client.api.inspect_container(running.model.container_name(node))["State"]
        assert state["Running"] and not state["Paused"], (node, state["Status"])
    assert running.ping("a", "10.206.1.2")


@pytest.fixture(scope="module")
def snap_lab(tmp_path_factory, docker_client) -> Iterator[RunningLab]:
    path = tmp_path_factory.mktemp("snap") / f"{LAB}.lab.yml"
    path.write_text(PAIR.format(name=LAB))
    try:
        deploy(path)
        running = RunningLab(path, docker_client)
        # A layer of a few hundred MB: committing it takes long enough to be caught halfway.
        code, output = running.exec(
            "a", "dd", "if=/dev/urandom", "of=/root/fill", "bs=1M", "count=300"
        )
        assert code == 0, output
        yield running
    finally:
        snapshots.clean_leftovers(LAB)
        for manifest in snapshots.list_snapshots(LAB):
            snapshots.delete_snapshot(LAB, manifest["name"])
        remove(path)
    assert_no_leftovers(LAB)


def test_snapshot_killed_halfway_leaves_lab_running_and_next_snapshot_cleans_up(snap_lab):
    client = snap_lab.client
    run = _start_playbook("playbooks/snapshot.yml", snap_lab.path, "-e", "snapshot=killed")
    try:
        assert _wait_until_committing(client, snap_lab.model.container_name("a")), (
            "the snapshot never committed node a"
        )
        victims = _process_tree(run.pid)
        os.killpg(run.pid, signal.SIGKILL)
        for pid in victims:  # also any process Ansible started in a session of its own
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    finally:
        run.wait(timeout=30)
    # Docker finishes the commit it was asked for and resumes the container on its own.
    assert wait_until(
        lambda: (
            not client.api.inspect_container(snap_lab.model.container_name("a"))["State"]["Paused"]
        ),
        60,
    )
    _assert_lab_runs(snap_lab)
    assert "killed" not in [m["name"] for m in snapshots.list_snapshots(LAB)]
    leftovers = snapshots.find_leftovers(LAB)
    assert any("/.killed.partial-" in leftover for leftover in leftovers), leftovers
    assert ".killed.partial-" in _resources_line(LAB)

    started = time.monotonic()
    result = run_playbook("snapshot.yml", snap_lab.path, "-e", "snapshot=after")
    assert result.returncode == 0, result.failure_messages() or result.stderr
    print(f"snapshot after a killed one: {time.monotonic() - started:.1f} s")
    assert [m["name"] for m in snapshots.list_snapshots(LAB)] == ["after"]
    assert snapshots.find_leftovers(LAB) == []
    assert _partial_images(client, LAB) == []
    assert _resources_line(LAB) == "snapshot_leftovers: -"
    assert not list(snapshots.Snapshots().lab_snapshots(LAB).glob(".*"))
    # The complete snapshot has its images under their own names.
    plan = snapshots.restore_plan(LAB, "after")
    assert plan["nodes"]["a"]["image"] == snapshots.image_name(LAB, "a", "after")
    _assert_lab_runs(snap_lab)


def test_snapshot_cancelled_with_sigterm_leaves_nothing_and_the_lab_running(snap_lab):
    client = snap_lab.client
    run = _start_playbook("playbooks/snapshot.yml", snap_lab.path, "-e", "snapshot=cancelled")
    try:
        assert _wait_until_committing(client, snap_lab.model.container_name("a"))
        taking = _snapshot_process(run.pid)
        assert taking is not None, "no process found that takes the snapshot"
        os.kill(taking, signal.SIGTERM)
        output, _ = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    assert run.returncode != 0
    assert "cancelled by signal SIGTERM" in output, output[-3000:]
    _assert_lab_runs(snap_lab)
    assert "cancelled" not in [m["name"] for m in snapshots.list_snapshots(LAB)]
    # Nothing for a later run to clean: the cancelled run removed all it had made.
    assert snapshots.find_leftovers(LAB) == []
    assert _partial_images(client, LAB) == []
    assert not list(snapshots.Snapshots().lab_snapshots(LAB).glob(".*"))
