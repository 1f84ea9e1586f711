"""The node image's init (images/node/ltb-node-init) keeps a node's SSH host keys usable.

A VM powered off hard seconds after its first boot can keep host key files that exist, are
not empty and are corrupt (the guest's ext4 had not written them yet): sshd then refused to
start and a deploy waited minutes for the SSH banner. These tests leave the same files in a
container node of the real image (ltb/node:latest, which the VM image's init runs too) and
restart it. One container per test, without a network; each test takes a few seconds.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import wait_until

pytestmark = pytest.mark.integration

IMAGE = "ltb/node:latest"
INIT = "/usr/local/sbin/ltb-node-init"
ROOT = Path(__file__).parents[2]
KEYS = {
    "ed25519": "/etc/ssh/ssh_host_ed25519_key",
    "ecdsa": "/etc/ssh/ssh_host_ecdsa_key",
}


class Node:
    def __init__(self, container):
        self.container = container

    def run(self, *argv: str) -> tuple[int, str]:
        code, output = self.container.exec_run(list(argv))
        return code, output.decode(errors="replace")

    def start(self) -> None:
        """Start the node and wait until its init wrote the ready marker."""
        self.container.start()
        ready = wait_until(lambda: self.run("test", "-f", "/run/ltb-node-ready")[0] == 0, 20)
        assert ready, f"node not ready after 20 s:\n{self.log_of_last_start()}"

    def restart(self) -> None:
        # ltb-node-init exits at once on SIGTERM: no need for docker's 10 s grace.
        self.container.stop(timeout=5)
        self.start()

    def log_of_last_start(self) -> str:
        log = self.container.logs().decode(errors="replace")
        return log[log.rfind("ltb-node-init: starting") :]

    def fingerprint(self, key: str) -> str:
        code, output = self.run("ssh-keygen", "-l", "-f", f"{key}.pub")
        assert code == 0, output
        return output.split()[1]

    def key_loads(self, key: str) -> bool:
        return self.run("ssh-keygen", "-y", "-P", "", "-f", key)[0] == 0

    def sshd_runs(self) -> bool:
        return self.run("sh", "-c", 'kill -0 "$(cat /run/sshd.pid)"')[0] == 0


@pytest.fixture
def node(docker_client) -> Iterator[Node]:
    """A started node of the real image, removed afterwards."""
    container = docker_client.containers.create(
        IMAGE, name=f"ltb-hm-node-init-{secrets.token_hex(4)}", network_mode="none"
    )
    try:
        node = Node(container)
        node.start()
        yield node
    finally:
        container.remove(force=True)


def test_node_image_carries_the_init_of_this_checkout(node):
    # The tests below test the image as built; a stale image would test an old init.
    code, output = node.run("cat", INIT)
    assert code == 0, output
    assert output == (ROOT / "images/node/ltb-node-init").read_text(), (
        f"{IMAGE} has another {INIT} than images/node/ltb-node-init: rebuild it with "
        "ansible-playbook playbooks/images.yml"
    )


def test_first_start_makes_host_keys_that_load_and_sshd_runs(node):
    assert node.sshd_runs(), node.log_of_last_start()
    for key in KEYS.values():
        assert node.key_loads(key), key


def test_intact_host_keys_are_kept_on_restart(node):
    before = {key: node.fingerprint(key) for key in KEYS.values()}
    node.restart()
    assert {key: node.fingerprint(key) for key in KEYS.values()} == before
    assert "making it again" not in node.log_of_last_start()
    assert node.sshd_runs(), node.log_of_last_start()


def test_truncated_host_key_is_made_again_and_sshd_starts(node):
    ed25519, ecdsa = KEYS["ed25519"], KEYS["ecdsa"]
    ecdsa_before = node.fingerprint(ecdsa)
    # What a lost write leaves: the start of the file, not empty, not a key. The init reads
    # the keys only when it starts, so they are cut while the node runs, then it restarts.
    cut = f"head -c 100 {ed25519} >/tmp/key && cat /tmp/key >{ed25519}"
    code, output = node.run("sh", "-c", cut)
    assert code == 0, output
    assert not node.key_loads(ed25519)

    node.restart()

    log = node.log_of_last_start()
    assert f"host key {ed25519} is unreadable" in log, log
    assert "sshd started" in log, log
    assert node.sshd_runs(), log
    for key in KEYS.values():
        assert node.key_loads(key), f"{key} does not load:\n{log}"
    assert node.fingerprint(ecdsa) == ecdsa_before


def test_host_key_without_its_public_half_is_made_again(node):
    ed25519 = KEYS["ed25519"]
    before = node.fingerprint(ed25519)
    code, output = node.run("rm", f"{ed25519}.pub")
    assert code == 0, output

    node.restart()

    assert f"host key {ed25519} is unreadable or has no .pub" in node.log_of_last_start()
    assert node.key_loads(ed25519)
    assert node.fingerprint(ed25519) != before
