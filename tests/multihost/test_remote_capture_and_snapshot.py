"""A lab that runs wholly on another hypervisor (the netns one, reached over SSH, Debian's
python3 only) can be captured from the controller and snapshotted and restored there.

The capture goes through ltb.capture's Python API, as the portal's does: `ltb-capture` is run
over SSH on the lab's hypervisor, with the SSH settings its inventory entry gives (the netns
shares this machine's files: the command roles/platform_capture installed here, run by the
session's Debian python3, without the controller's venv). Snapshots
are playbooks/snapshot.yml and restore.yml with LTB_HYPERVISOR naming that hypervisor: the
snapshot module's Docker client follows the session's DOCKER_HOST there. One lab (two nodes)
for the module; its fixture removes it, also on failure.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from ltb import capture
from ltb.allocation import Registry
from ltb.deployed import DEFAULT_STATE_DIR
from tests.multihost.conftest import resources_on, run_playbook

pytestmark = pytest.mark.integration

LAB = "rc-pair"
# On conftest's netns hypervisor, shared by the multi-host tests of the session.
TOPOLOGY = f"""\
name: {LAB}
nodes:
  a:
    interfaces: {{eth1: {{ipv4: 10.93.1.1/24}}}}
  b:
    interfaces: {{eth1: {{ipv4: 10.93.1.2/24}}}}
links:
  - endpoints: [a:eth1, b:eth1]
"""


@pytest.fixture(scope="module")
def lab(hypervisor, hypervisors_dir, tmp_path_factory) -> Iterator[Path]:
    lab_file = tmp_path_factory.mktemp("lab") / f"{LAB}.lab.yml"
    lab_file.write_text(TOPOLOGY)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LTB_HYPERVISOR", hypervisor.name)
        deployed = run_playbook("deploy.yml", hypervisors_dir / "hosts.yaml", lab_file)
        print(f"deploy took {deployed.seconds:.1f} s")
        try:
            assert deployed.returncode == 0, deployed.failures()
            yield lab_file
        finally:
            if not resources_on(hypervisor, LAB).empty():
                run_playbook("remove.yml", hypervisors_dir / "hosts.yaml", lab_file)
            Registry(DEFAULT_STATE_DIR).release(LAB)
            for snapshot in (hypervisor.state_dir / "snapshots" / LAB).glob("*"):
                run_playbook(
                    "snapshot.yml", hypervisors_dir / "hosts.yaml", lab_file,
                    "-e", f"snapshot={snapshot.name}", "-e", "snapshot_action=delete",
                )  # fmt: skip


def in_node(hypervisor, node: str, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", "exec", f"ltb-{LAB}.{node}", *argv],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "DOCKER_HOST": hypervisor.docker_host},
    )


def via(hypervisor, hypervisors_dir) -> capture.SshHypervisor:
    found = yaml.safe_load((hypervisors_dir / "hosts.yaml").read_text())["hypervisors"]["hosts"]
    target = capture.ssh_hypervisor(hypervisor.name, found[hypervisor.name])
    assert target is not None
    return target


def mirrors_on(hypervisor) -> str:
    return hypervisor.run(
        "ovs-vsctl", "--columns=name", "find", "Mirror", f"external_ids:ltb-lab={LAB}"
    )


def test_the_lab_runs_on_the_other_hypervisor_only(lab, hypervisor):
    there = hypervisor.docker("ps", "--filter", f"label=ltb.lab={LAB}", "--format", "{{.Names}}")
    assert sorted(there.split()) == [f"ltb-{LAB}.a", f"ltb-{LAB}.b"]
    here = subprocess.run(
        ["docker", "ps", "-q", "--filter", f"label=ltb.lab={LAB}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert here.stdout.split() == []


def test_capture_through_the_api_reaches_the_labs_hypervisor_over_ssh(
    lab, hypervisor, hypervisors_dir, tmp_path
):
    summary = capture.CaptureSummary()
    stream = capture.capture_stream(
        LAB,
        "a:eth1",
        expression="icmp",
        bounds=capture.CaptureBounds(seconds=20, packets=4),
        summary=summary,
        via=via(hypervisor, hypervisors_dir),
    )
    header = next(stream)  # the capture listens once the header came
    assert "ltb/rc-pair/capture-" in mirrors_on(hypervisor)
    pinged = in_node(hypervisor, "a", "ping", "-c", "3", "-i", "0.3", "10.93.1.2")
    assert pinged.returncode == 0, pinged.stdout + pinged.stderr
    pcap = tmp_path / "a-b.pcap"
    pcap.write_bytes(header + b"".join(stream))
    read = subprocess.run(
        ["tcpdump", "-n", "-r", pcap], capture_output=True, text=True, check=True
    ).stdout
    assert "10.93.1.1 > 10.93.1.2: ICMP echo request" in read, read
    assert "10.93.1.2 > 10.93.1.1: ICMP echo reply" in read, read
    assert summary.packets == 4 and summary.stopped_by == "packets"
    deadline = time.monotonic() + 10
    while "ltb/" in mirrors_on(hypervisor) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "ltb/" not in mirrors_on(hypervisor), "the remote capture left its mirror"


def test_closing_a_remote_capture_early_removes_its_mirror_there(lab, hypervisor, hypervisors_dir):
    stream = capture.capture_stream(
        LAB,
        "b:eth1",
        scope="interface",
        bounds=capture.CaptureBounds(seconds=300),
        via=via(hypervisor, hypervisors_dir),
    )
    next(stream)
    assert "ltb/" in mirrors_on(hypervisor)
    started = time.monotonic()
    stream.close()  # the reader went away, long before the duration bound
    deadline = time.monotonic() + 10
    while "ltb/" in mirrors_on(hypervisor) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "ltb/" not in mirrors_on(hypervisor)
    assert time.monotonic() - started < 10


def test_a_bad_remote_endpoint_is_named_by_the_hypervisor(lab, hypervisor, hypervisors_dir):
    with pytest.raises(capture.CaptureError, match="has no lab interface 'eth9'") as raised:
        next(capture.capture_stream(LAB, "a:eth9", via=via(hypervisor, hypervisors_dir)))
    assert f"on hypervisor {hypervisor.name}" in str(raised.value)
    assert "ltb/" not in mirrors_on(hypervisor)


def test_snapshot_and_restore_of_a_lab_on_the_other_hypervisor(lab, hypervisor, hypervisors_dir):
    hosts = hypervisors_dir / "hosts.yaml"
    assert in_node(hypervisor, "a", "sh", "-c", "echo kept > /root/marker").returncode == 0
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LTB_HYPERVISOR", hypervisor.name)
        taken = run_playbook("snapshot.yml", hosts, lab, "-e", "snapshot=s1")
        assert taken.returncode == 0, taken.failures()
        print(f"snapshot took {taken.seconds:.1f} s")
        assert (hypervisor.state_dir / "snapshots" / LAB / "s1").is_dir()
        assert not (DEFAULT_STATE_DIR / "snapshots" / LAB).exists(), "snapshot kept here"
        committed = hypervisor.docker("images", "--format", "{{.Repository}}:{{.Tag}}")
        assert LAB in committed, committed  # the image was committed by the netns dockerd

        assert in_node(hypervisor, "a", "sh", "-c", "echo lost > /root/marker").returncode == 0
        restored = run_playbook("restore.yml", hosts, lab, "-e", "snapshot=s1")
        assert restored.returncode == 0, restored.failures()
        print(f"restore took {restored.seconds:.1f} s")
    assert in_node(hypervisor, "a", "cat", "/root/marker").stdout.strip() == "kept"
    assert in_node(hypervisor, "a", "ping", "-c", "1", "-W", "2", "10.93.1.2").returncode == 0
