"""A VM node's runtime state is read for a snapshot in one SSH session (each connection to a
TCG guest costs a second or more): the session's shell command, run here in a network
namespace of its own instead of over SSH, gives the same routes as reading them one by one."""

from __future__ import annotations

import shutil

import pytest

from ltb import module_utils

runtime = module_utils.load("ltb_snapshot_runtime")

pytestmark = pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare")

SETUP = (
    "ip link set lo up && ip link add d0 type veth peer name d1"
    " && ip link set d1 up && ip link set d0 up"
    " && ip addr add 10.9.0.1/24 dev d0"
    " && ip route add 10.99.0.0/16 via 10.9.0.2"
    " && ip route add blackhole 10.97.0.0/16"
    " && ip -6 route add 2001:db8:5::/48 dev d0"
)


class LocalVm(runtime.VmNode):
    """The VM's session run by `sh` in a fresh network namespace with routes set by hand."""

    def __init__(self, setup=SETUP):
        super().__init__("vm", "192.0.2.1", "/nonexistent")
        self.setup = setup

    def _ssh(self, command, stdin=None):
        return runtime.run(
            ["unshare", "--net", "sh", "-c", f"{self.setup} && {{ {command} }}"],
            f"node {self.name}",
        )


def test_one_session_reads_the_routes_set_by_hand_of_both_families():
    state = LocalVm().save_state()
    assert sorted(state["routes"]["4"]) == [
        "route replace blackhole 10.97.0.0/16 proto 3",
        "route replace unicast 10.99.0.0/16 via 10.9.0.2 dev d0 proto 3",
    ]
    assert state["routes"]["6"] == [
        "route replace unicast 2001:db8:5::/48 dev d0 metric 1024 proto 3"
    ]
    # zebra may run in other nodes of this machine, but no vtysh reaches it from here.
    assert state["frr_config_saved"] in (True, False)


def test_a_session_that_cannot_read_the_routes_fails_and_names_the_node():
    # IPv4 routes cannot be read; IPv6 ones can, so the session's last command succeeds.
    broken = LocalVm(setup='ip() { [ "$1" = -4 ] && return 1; command ip "$@"; }')
    with pytest.raises(runtime.RuntimeStateError, match="node vm"):
        broken.save_state()


def test_a_node_without_routes_of_its_own_gives_empty_lists():
    assert LocalVm(setup="true").save_state()["routes"] == {"4": [], "6": []}
