"""What a node's device information holds, from what its commands answer."""

from __future__ import annotations

from ltb import device_info
from ltb.device_info import NodeUnreachable, pretty_os_name, read_device_info

OS_RELEASE = b'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\n'


class Answers:
    """A node that answers each command from a table (pure logic: no node is asked)."""

    def __init__(self, answers: dict[tuple[str, ...], tuple[int, bytes]], up: bool = True):
        self.answers, self.up, self.closed = answers, up, False

    def check(self) -> None:
        if not self.up:
            raise NodeUnreachable("its container ltb-x.a is exited")

    def run(self, argv):
        return self.answers.get(argv, (127, b"not found"))

    def close(self) -> None:
        self.closed = True


def test_the_os_is_named_by_its_pretty_name():
    assert pretty_os_name(OS_RELEASE.decode()) == "Debian GNU/Linux 12 (bookworm)"
    assert pretty_os_name("NAME=x\n") is None


def test_a_node_with_frr_running_gives_its_version_and_running_config():
    node = Answers(
        {
            device_info.OS_RELEASE: (0, OS_RELEASE),
            device_info.FRR_RUNNING: (0, b"12\n"),
            device_info.FRR_VERSION: (0, b"FRRouting 8.4.4"),
            device_info.FRR_CONFIG: (0, b"frr version 8.4.4\nrouter ospf\n"),
        }
    )
    info = read_device_info(node)
    assert info.reachable and info.frr_running and node.closed
    assert info.running_config.startswith("frr version") and info.addresses is None


def test_a_node_without_frr_gives_addresses_and_routes_cut_to_the_output_bound():
    huge = b"x" * (device_info.MAX_OUTPUT_BYTES + 10)
    node = Answers(
        {
            device_info.OS_RELEASE: (0, OS_RELEASE),
            device_info.FRR_RUNNING: (1, b""),
            device_info.IP_ADDRESSES: (0, huge),
            device_info.IP_ROUTES: (2, b"RTNETLINK answers: no"),
        }
    )
    info = read_device_info(node)
    assert not info.frr_running and len(info.addresses) == device_info.MAX_OUTPUT_BYTES
    assert info.truncated == ["addresses"]
    assert info.routes.startswith("ip route failed (exit 2)")


def test_a_node_that_is_down_says_so_instead_of_failing():
    node = Answers({}, up=False)
    info = read_device_info(node)
    assert info.reachable is False and "ltb-x.a is exited" in info.error and node.closed
