"""Mirrors and remote capture on a running lab: what a capture holds, its bounds, its errors,
and that nothing of a mirror outlives it."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from ltb.ssh import ssh_argv
from tests.integration.conftest import (
    TOPOLOGIES,
    RunningLab,
    assert_no_leftovers,
    deploy,
    remove,
    remove_if_left,
    run_playbook,
)

pytestmark = pytest.mark.integration
LAB = "capture-lab"
SSH_KEY = "/var/lib/ltb/ssh/id_ed25519"
CAPTURE = shutil.which("ltb-capture") or "/usr/local/bin/ltb-capture"


@pytest.fixture(scope="module")
def lab(docker_client, tmp_path_factory):
    path = tmp_path_factory.mktemp("capture") / f"{LAB}.lab.yml"
    path.write_text(
        (TOPOLOGIES / "chain3.lab.yml").read_text().replace("name: NAME", f"name: {LAB}")
    )
    remove_if_left(path)
    deploy(path)
    yield RunningLab(path, docker_client)
    remove(path)
    assert_no_leftovers(LAB)


def ltb_mirrors() -> list[str]:
    out = subprocess.run(
        [
            "ovs-vsctl",
            "--format=json",
            "--columns=name",
            "find",
            "Mirror",
            f"external_ids:ltb-lab={LAB}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [row[0] for row in json.loads(out)["data"]]


def capture_mirrors() -> list[str]:
    return [name for name in ltb_mirrors() if name.startswith(f"ltb/{LAB}/capture-")]


def capture_ports() -> list[str]:
    """Hypervisor interfaces of the lab's mirrors (their alias is ltb:<lab>:mirror:<name>)."""
    out = subprocess.run(["ip", "-j", "-d", "link"], capture_output=True, text=True, check=True)
    prefix = f"ltb:{LAB}:mirror:"
    return [
        link["ifname"]
        for link in json.loads(out.stdout)
        if link.get("ifalias", "").startswith(prefix)
    ]


def packets(pcap: Path, *fields: str) -> list[tuple[str, ...]]:
    out = subprocess.run(
        ["tshark", "-r", str(pcap), "-T", "fields", *(a for f in fields for a in ("-e", f))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [tuple(line.split("\t")) for line in out.splitlines() if line.strip()]


def start_capture(*argv, stdout=subprocess.DEVNULL) -> subprocess.Popen:
    """Start a capture and return once it captures (it says so on stderr)."""
    process = subprocess.Popen(
        [str(a) for a in argv], stdout=stdout, stderr=subprocess.PIPE, text=True
    )
    said = ""
    for line in iter(process.stderr.readline, ""):
        said += line
        if "ltb-capture: capturing" in line:
            return process
    raise AssertionError(f"the capture did not start: {said}")


def keep_pinging(lab: RunningLab, source: str, target: str, seconds: float) -> threading.Thread:
    thread = threading.Thread(
        target=lab.exec, args=(source, "ping", "-c", str(int(seconds / 0.2)), "-i", "0.2", target)
    )
    thread.start()
    return thread


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A real OpenSSH server on loopback, as on a hypervisor, that admits the platform key."""
    home = tmp_path_factory.mktemp("sshd")
    host_key = home / "host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", host_key], check=True)
    config = home / "sshd_config"
    port = free_port()  # not 2222: the platform's bastion listens there
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
        "PermitRootLogin prohibit-password\n"
        f"AuthorizedKeysFile {SSH_KEY}.pub\nPasswordAuthentication no\nUsePAM no\n"
        f"PidFile {home}/sshd.pid\nSetEnv PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)
    server = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", config], stderr=subprocess.PIPE)
    time.sleep(0.5)
    assert server.poll() is None, server.stderr.read()
    yield ssh_argv("127.0.0.1", key=SSH_KEY, port=port)
    server.terminate()
    server.wait()


def test_capture_over_ssh_holds_the_link_traffic_and_no_other(lab, sshd, tmp_path):
    pcap = tmp_path / "link.pcap"
    with pcap.open("wb") as output:
        ssh = start_capture(*sshd, "ltb-capture", LAB, "a:eth1", "--duration", "8", stdout=output)
        pings = [keep_pinging(lab, "a", "10.203.1.2", 2), keep_pinging(lab, "c", "10.203.2.2", 2)]
        for thread in pings:
            thread.join()
        _, stderr = ssh.communicate(timeout=60)
    assert ssh.returncode == 0, stderr
    seen = packets(pcap, "ip.src", "ip.dst", "icmp.type")
    assert ("10.203.1.1", "10.203.1.2", "8") in seen, "no echo request of the captured link"
    assert ("10.203.1.2", "10.203.1.1", "0") in seen, "no echo reply of the captured link"
    assert not [p for p in seen if "10.203.2.3" in p[:2]], "packets of another link leaked in"
    assert packets(pcap, "vlan.id") == [], "copies carry the link's VLAN tag"
    assert ltb_mirrors() == [] and capture_ports() == []


def test_interface_only_capture_sees_that_interface(lab, tmp_path):
    pcap = tmp_path / "if.pcap"
    capture = start_capture(
        CAPTURE, LAB, "b:eth2", "--interface-only", "--duration", "5", "--write", pcap
    )
    keep_pinging(lab, "c", "10.203.2.2", 2).join()
    assert capture.wait(timeout=60) == 0
    assert ("10.203.2.3", "10.203.2.2", "8") in packets(pcap, "ip.src", "ip.dst", "icmp.type")


def test_filter_is_applied(lab, tmp_path):
    pcap = tmp_path / "filtered.pcap"
    capture = start_capture(
        CAPTURE,
        LAB,
        "a:eth1",
        "--filter",
        "icmp[icmptype] == icmp-echoreply",
        "--duration",
        "5",
        "--write",
        pcap,
    )
    keep_pinging(lab, "a", "10.203.1.2", 2).join()
    assert capture.wait(timeout=60) == 0
    types = {p[0] for p in packets(pcap, "icmp.type")}
    assert types == {"0"}


def test_packet_bound_stops_the_capture(lab, tmp_path):
    pcap = tmp_path / "bounded.pcap"
    pinging = keep_pinging(lab, "a", "10.203.1.2", 10)
    result = subprocess.run(
        [CAPTURE, LAB, "a:eth1", "--packets", "3", "--duration", "30", "--write", pcap],
        capture_output=True,
        text=True,
        timeout=60,
    )
    pinging.join()
    assert result.returncode == 0, result.stderr
    assert len(packets(pcap, "frame.number")) == 3
    assert "stopped by packets" in result.stderr


def test_duration_bound_stops_a_quiet_capture(lab, tmp_path):
    result = subprocess.run(
        [CAPTURE, LAB, "a:eth1", "--duration", "2", "--write", tmp_path / "q.pcap"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "stopped by duration" in result.stderr
    assert ltb_mirrors() == []


def test_byte_bound_stops_the_capture_at_a_packet_boundary(lab, tmp_path):
    pcap = tmp_path / "bytes.pcap"
    pinging = keep_pinging(lab, "a", "10.203.1.2", 10)
    result = subprocess.run(
        [CAPTURE, LAB, "a:eth1", "--bytes", "400", "--duration", "30", "--write", pcap],
        capture_output=True,
        text=True,
        timeout=60,
    )
    pinging.join()
    assert result.returncode == 0, result.stderr
    assert 24 < pcap.stat().st_size <= 400
    assert len(packets(pcap, "frame.number")) >= 1  # tshark reads it: whole packets only
    assert "stopped by bytes" in result.stderr


def test_terminated_capture_removes_its_mirror(lab, tmp_path):
    capture = start_capture(
        CAPTURE, LAB, "a:eth1", "--duration", "60", "--write", tmp_path / "t.pcap"
    )
    assert ltb_mirrors(), "the capture made no mirror"
    capture.send_signal(signal.SIGTERM)
    capture.wait(timeout=20)
    assert ltb_mirrors() == [] and capture_ports() == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["a:eth1", "--filter", "icmp and and"], "bad capture filter"),
        (["a:eth1", "--filter", "icmp; reboot"], "bad capture filter"),
        (["a:eth1", "--filter=-V"], "must not start with '-'"),
        (["a:eth9"], "has no lab interface 'eth9'"),
        (["z:eth1"], "has no node 'z'"),
        (["a:eth1", "--duration", "0"], "duration must be more than 0"),
        (["a:eth1", "--bytes", "99999999999"], "bytes must be more than 0 and at most"),
    ],
)
def test_bad_capture_requests_fail_clearly_without_a_mirror(lab, args, message):
    result = subprocess.run([CAPTURE, LAB, *args], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""
    assert ltb_mirrors() == []


def test_capture_of_a_lab_that_is_not_deployed_fails_clearly():
    result = subprocess.run([CAPTURE, "no-such-lab", "a:eth1"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "lab 'no-such-lab' is not deployed on this hypervisor" in result.stderr


def test_mirror_playbook_creates_converges_and_removes_mirrors(lab):
    link = run_playbook("mirror.yml", lab.path, "-e", "mirror_endpoint=a:eth1")
    interface = run_playbook(
        "mirror.yml", lab.path, "-e", "mirror_endpoint=b:eth2", "-e", "mirror_scope=interface"
    )
    assert link.returncode == 0 and interface.returncode == 0, link.failure_messages()
    assert sorted(ltb_mirrors()) == [f"ltb/{LAB}/interface-b-eth2", f"ltb/{LAB}/link-a-eth1"]
    again = run_playbook("mirror.yml", lab.path, "-e", "mirror_endpoint=a:eth1")
    assert again.returncode == 0 and again.changed() == {}
    gone = run_playbook(
        "mirror.yml",
        lab.path,
        "-e",
        "mirror_endpoint=b:eth2",
        "-e",
        "mirror_scope=interface",
        "-e",
        "mirror_state=absent",
    )
    assert gone.returncode == 0
    assert ltb_mirrors() == [f"ltb/{LAB}/link-a-eth1"]
    # The link mirror stays: removing the lab (module teardown) must remove it and its port.


def test_mirror_playbook_names_a_bad_endpoint(lab):
    result = run_playbook("mirror.yml", lab.path, "-e", "mirror_endpoint=a:eth7")
    assert result.returncode != 0
    assert any("has no lab interface 'eth7'" in m for m in result.failure_messages())


def test_mirror_of_a_killed_capture_is_removed_by_the_next_capture(lab, tmp_path):
    killed = start_capture(
        CAPTURE, LAB, "a:eth1", "--duration", "60", "--write", tmp_path / "k.pcap"
    )
    assert capture_mirrors(), "the capture made no mirror"
    killed.kill()  # SIGKILL: no chance to clean up
    killed.wait()
    assert len(capture_mirrors()) == 1
    result = subprocess.run(
        [CAPTURE, LAB, "a:eth1", "--duration", "1", "--write", tmp_path / "n.pcap"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert capture_mirrors() == []
