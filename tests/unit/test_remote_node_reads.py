"""How nodes on another hypervisor are read: the remote answers' parsing, and the SSH command
lines that go through that hypervisor (pure logic: nothing is asked)."""

from __future__ import annotations

import json
from pathlib import Path

from ltb import node_state
from ltb.capture import SshHypervisor
from ltb.device_info import SshReader
from ltb.node_state import FAILED, Cached, node_states, parse_docker_ps, parse_remote_virsh
from ltb.ssh import shared_connection

VIA = SshHypervisor("hv-x", "198.18.7.2", 2222, "ltb", Path("/keys/hv"))


def ps_line(names: str, state: str, status: str) -> str:
    return json.dumps({"Names": names, "State": state, "Status": status, "ID": "0123"})


def test_docker_ps_json_lines_give_each_container_its_node_state():
    text = "\n".join(
        [
            ps_line("ltb-l.a", "running", "Up 3 minutes"),
            ps_line("ltb-l.b", "exited", "Exited (0) 1 second ago"),
            ps_line("ltb-l.c", "running", "Up 1 second (health: starting)"),
            "not json",
        ]
    )
    assert parse_docker_ps(text) == {
        "ltb-l.a": "running",
        "ltb-l.b": "stopped",
        "ltb-l.c": "starting",
    }
    assert parse_docker_ps("") == {}


def test_a_runtime_that_failed_there_is_not_read_as_empty():
    assert parse_docker_ps(f"Cannot connect to the Docker daemon\n{FAILED}\n") is None
    assert parse_remote_virsh(f"{FAILED}\n") is None
    assert parse_remote_virsh(" Id  Name  State\n----\n 1  ltb-l.v  running\n") == {
        "ltb-l.v": "running"
    }


def test_nodes_on_another_hypervisor_are_read_from_its_reading_only(monkeypatch):
    def fail():
        raise AssertionError("this machine's Docker was asked about another hypervisor's nodes")

    monkeypatch.setattr(node_state, "CONTAINERS", Cached(fail, 60))
    monkeypatch.setattr(node_state, "REMOTE", {})
    reading = {"docker": {"ltb-l.a": "running"}, "libvirt": None}
    node_state.REMOTE[(VIA, "qemu:///system")] = Cached(lambda: reading, 60)
    kinds = {"a": "container", "b": "container", "v": "vm"}
    assert node_states("l", kinds, VIA) == {"a": "running", "b": "missing", "v": "unknown"}


def test_an_unreachable_hypervisor_gives_unknown_states(monkeypatch):
    monkeypatch.setattr(node_state, "REMOTE", {})
    node_state.REMOTE[(VIA, "qemu:///system")] = Cached(lambda: None, 60)
    assert node_states("l", {"a": "container"}, VIA) == {"a": "unknown"}


def test_a_vm_on_another_hypervisor_is_reached_through_it_with_its_ssh_settings():
    argv = SshReader("10.255.0.5", Path("/keys/platform"), via=VIA).argv("'true'")
    proxy = next(a for a in argv if a.startswith("ProxyCommand="))
    assert argv[-2:] == ["root@10.255.0.5", "'true'"]
    # The hop shares the controller's connection to the hypervisor when this machine can
    # (ltb.ssh.shared_connection); its %C is escaped for the outer ssh to pass on.
    shared = "".join(f"{option} " for option in shared_connection()).replace("%", "%%")
    assert proxy == (
        f"ProxyCommand=ssh -l ltb {shared}-i /keys/hv -p 2222 -o StrictHostKeyChecking=no "
        "-o UserKnownHostsFile=/dev/null -o BatchMode=yes -o ConnectTimeout=10 "
        "-o LogLevel=ERROR -W %h:%p root@198.18.7.2"
    )
    assert not any(
        a.startswith("ProxyCommand=") for a in SshReader("10.0.0.1", Path("k")).argv("x")
    )
