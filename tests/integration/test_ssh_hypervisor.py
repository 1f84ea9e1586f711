"""A hypervisor reached over a real SSH connection, with only Debian's python3 and the platform
packages: deploy, mirror and remove a lab there. Nothing of the controller's `ltb` package or
virtualenv exists for the modules on that side (issue 10: self-contained modules)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import (
    BIN,
    ROOT,
    PlaybookRun,
    RunningLab,
    assert_no_leftovers,
)

pytestmark = pytest.mark.integration
LAB = "sh-ssh"
HYPERVISOR = "ssh-hypervisor"
PYTHON = "/usr/bin/python3"  # Debian's: no ltb, no pydantic, no venv
# A shared segment of three nodes and a point-to-point link beside it.
TOPOLOGY = f"""\
name: {LAB}
nodes:
  a:
    interfaces:
      eth1: {{ipv4: 10.207.1.1/24}}
      eth2: {{ipv4: 10.207.2.1/24}}
  b:
    interfaces:
      eth1: {{ipv4: 10.207.1.2/24}}
      eth2: {{ipv4: 10.207.2.2/24}}
  c:
    interfaces:
      eth1: {{ipv4: 10.207.1.3/24}}
links:
  - endpoints: [a:eth1, b:eth1, c:eth1]
  - endpoints: [a:eth2, b:eth2]
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SshHypervisor:
    """This machine as a hypervisor behind its own sshd (root, key only, loopback)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.key = home / "id_ed25519"
        self.port = free_port()
        self.log = home / "sshd.log"
        host_key = home / "host_key"
        for path in (host_key, self.key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path], check=True)
        (home / "authorized_keys").write_text(Path(f"{self.key}.pub").read_text())
        self.config = home / "sshd_config"
        self.config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
            f"PermitRootLogin prohibit-password\nAuthorizedKeysFile {home}/authorized_keys\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
            "StrictModes no\nLogLevel VERBOSE\nSubsystem sftp internal-sftp\n"
            f"PidFile {home}/sshd.pid\nSetEnv PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin\n"
        )

    def start(self) -> None:
        Path("/run/sshd").mkdir(exist_ok=True)
        with self.log.open("wb") as log:
            self.server = subprocess.Popen(
                ["/usr/sbin/sshd", "-D", "-e", "-f", self.config], stderr=log
            )
        deadline = time.monotonic() + 10
        while True:
            assert self.server.poll() is None, self.log.read_text()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert time.monotonic() < deadline, f"sshd does not answer on {self.port}"
                time.sleep(0.1)

    def stop(self) -> None:
        self.server.terminate()
        self.server.wait(timeout=10)

    def ssh(self, *command: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["ssh", "-i", self.key, "-p", str(self.port), "-o", "BatchMode=yes",
             "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "root@127.0.0.1", *command],
            capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip

    def inventory(self, directory: Path) -> Path:
        """An inventory whose one hypervisor is this host over SSH, with the platform's vars."""
        directory.mkdir()
        (directory / "group_vars").symlink_to(ROOT / "group_vars")
        host = {
            "ansible_connection": "ssh",
            "ansible_host": "127.0.0.1",
            "ansible_port": self.port,
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(self.key),
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no "
            "-o UserKnownHostsFile=/dev/null",
            "ansible_python_interpreter": PYTHON,
        }
        hosts = directory / "hosts.yaml"
        hosts.write_text(json.dumps({"hypervisors": {"hosts": {HYPERVISOR: host}}}))
        return directory


@pytest.fixture(scope="module")
def hypervisor(tmp_path_factory) -> Iterator[SshHypervisor]:
    server = SshHypervisor(tmp_path_factory.mktemp("sshd"))
    server.start()
    yield server
    server.stop()


def run(playbook: str, inventory: Path, lab_file: Path, *extra: str) -> PlaybookRun:
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        LTB_HYPERVISOR=HYPERVISOR,
        PATH=f"{BIN}:{env.get('PATH', '')}",
    )
    process = subprocess.run(
        [BIN / "ansible-playbook", "-i", inventory, "-i", lab_file,
         f"playbooks/{playbook}", *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    try:
        output = json.loads(process.stdout)
    except json.JSONDecodeError:
        output = {"unparsed": process.stdout}
    result = PlaybookRun(process.returncode, output, process.stderr)
    assert result.returncode == 0, "\n".join(result.failure_messages()) or process.stderr[-3000:]
    return result


def test_hypervisor_python_has_no_ltb(hypervisor):
    """The guard of this module: a module that imports ltb fails on this hypervisor."""
    found = hypervisor.ssh(PYTHON, "-c", "'import ltb'")  # one word for the remote shell
    assert found.returncode != 0 and "No module named 'ltb'" in found.stderr, found
    assert hypervisor.ssh(PYTHON, "-c", "'import pydantic'").returncode != 0


def test_lab_deploys_mirrors_and_goes_on_a_hypervisor_over_ssh(hypervisor, docker_client, tmp_path):
    lab_file = tmp_path / f"{LAB}.lab.yml"
    lab_file.write_text(TOPOLOGY)
    inventory = hypervisor.inventory(tmp_path / "inventory")
    try:
        would = run("deploy.yml", inventory, lab_file, "--check", "--diff")
        assert would.changed().get(HYPERVISOR), "check mode reports no change for a new lab"
        assert_no_leftovers(LAB)  # and makes nothing
        run("deploy.yml", inventory, lab_file)
        lab = RunningLab(lab_file, docker_client)
        assert lab.ping("a", "10.207.1.3"), "no ping across the shared segment"
        assert lab.ping("c", "10.207.1.2"), "no ping across the shared segment"
        assert lab.ping("b", "10.207.2.1"), "no ping across the point-to-point link"
        assert not lab.ping("c", "10.207.2.1"), "c reached a link it is not on"

        mirror = run("mirror.yml", inventory, lab_file, "-e", "mirror_endpoint=a:eth2")
        shown = [
            item["capture_interface"]
            for play in mirror.output["plays"]
            for task in play["tasks"]
            for result in task["hosts"].values()
            for item in result.get("results", [])
            if "capture_interface" in item
        ]
        assert len(shown) == 1 and Path("/sys/class/net", shown[0]).exists()
        capture = subprocess.Popen(
            ["tcpdump", "-n", "-c", "2", "-i", shown[0], "icmp"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        time.sleep(1)
        lab.exec("b", "ping", "-c", "3", "-i", "0.3", "10.207.2.1")
        seen, _ = capture.communicate(timeout=20)
        assert "10.207.2.2 > 10.207.2.1: ICMP echo request" in seen, seen
        run("mirror.yml", inventory, lab_file, "-e", "mirror_endpoint=a:eth2",
            "-e", "mirror_state=absent")  # fmt: skip
        assert not Path("/sys/class/net", shown[0]).exists()
    finally:
        run("remove.yml", inventory, lab_file)
    assert_no_leftovers(LAB)
    assert "Accepted publickey for root" in hypervisor.log.read_text(), "no run came over SSH"
