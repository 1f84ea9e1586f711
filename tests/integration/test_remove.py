"""Remove finds everything of a lab by the lab's identity, also what no topology names any
more (a deploy that died halfway, a node since taken out): the bridge by its external_ids,
interfaces by their alias ltb:<lab>:... or their names from the lab's tag, the tunnel device,
VM domains by the lab's node prefix, the state directory. Check mode reports them and
removes nothing; a second remove changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ltb.allocation import Registry
from ltb.deployed import DEFAULT_STATE_DIR
from ltb.resources import find_lab_resources
from tests.integration.conftest import (
    BIN,
    ROOT,
    assert_no_leftovers,
    remove,
    run_playbook,
    topology_file,
)

pytestmark = pytest.mark.integration

LAB = "rm-left"
VIRSH = ("virsh", "-c", "qemu:///system")


def network_of(path: Path) -> dict:
    """The lab's network as the inventory plugin gives it to the hypervisor (tag, names)."""
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    shown = subprocess.run(
        [BIN / "ansible-inventory", "-i", "inventory/", "-i", str(path), "--list"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    hostvars = json.loads(shown.stdout)["_meta"]["hostvars"]
    return unsafe_free(hostvars["a"]["ltb_lab_network"])


def unsafe_free(value):
    """ansible-inventory's JSON wraps strings as {"__ansible_unsafe": ...}."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {key: unsafe_free(item) for key, item in value.items()}
    if isinstance(value, list):
        return [unsafe_free(item) for item in value]
    return value


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def interface_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def domain_exists(name: str) -> bool:
    return subprocess.run([*VIRSH, "dominfo", name], capture_output=True).returncode == 0


def leave_what_a_dead_deploy_leaves(network: dict) -> dict[str, str]:
    """Leftovers of the lab no topology names any more; their names."""
    tag = network["tag"]
    names = {
        # Not named like a host end: only its alias says whose it is.
        "labelled": f"rmx{tag}",
        "unlabelled": f"v{tag}0000cafe",
        "tunnel": f"ltt-{tag}",
        "domain": f"{network['node_prefix']}gone",
        "state": str(Path(DEFAULT_STATE_DIR, "labs", LAB)),
    }
    sh(
        "ovs-vsctl",
        "--may-exist",
        "add-br",
        network["bridge"],
        "--",
        "set",
        "Bridge",
        network["bridge"],
        "datapath_type=netdev",
        f"external_ids:ltb-lab={LAB}",
    )
    sh("ip", "link", "add", names["labelled"], "type", "veth", "peer", "name", f"rmy{tag}")
    sh("ip", "link", "set", names["labelled"], "alias", f"ltb:{LAB}:gone:eth3")
    sh("ovs-vsctl", "add-port", network["bridge"], names["labelled"])
    sh("ip", "link", "add", names["unlabelled"], "type", "veth", "peer", "name", f"p{tag}0000cafe")
    # Any kind of device: only its name and missing alias say that it is the lab's tunnel.
    sh("ip", "link", "add", names["tunnel"], "type", "veth", "peer", "name", f"rmz{tag}")
    xml = (
        f"<domain type='qemu'><name>{names['domain']}</name><memory>65536</memory>"
        "<os><type arch='x86_64'>hvm</type></os></domain>"
    )
    subprocess.run(
        [*VIRSH, "define", "/dev/stdin"],
        input=xml,
        text=True,
        check=True,
        capture_output=True,
    )
    Path(names["state"]).mkdir(parents=True, exist_ok=True)
    Path(names["state"], "topology.yml").write_text("left by a deploy that died\n")
    return names


def still_there(names: dict[str, str]) -> list[str]:
    return [
        name
        for kind, name in names.items()
        if (kind == "domain" and domain_exists(name))
        or (kind == "state" and Path(name).exists())
        or (kind not in ("domain", "state") and interface_exists(name))
    ]


@pytest.fixture
def leftovers(tmp_path) -> Iterator[tuple[Path, dict, dict[str, str]]]:
    path = topology_file(tmp_path, "pair.lab.yml", LAB)
    names: dict[str, str] = {}
    try:
        network = network_of(path)
        names = leave_what_a_dead_deploy_leaves(network)
        yield path, network, names
    finally:
        if not find_lab_resources(LAB).empty():
            remove(path)
        # What a broken remove would leave that no lab's identity names (the unlabelled ones).
        for name in still_there(names):
            if interface_exists(name):
                subprocess.run(["ip", "link", "del", name], check=False)
            if name == names["domain"]:
                subprocess.run([*VIRSH, "undefine", name], check=False, capture_output=True)
        Registry(DEFAULT_STATE_DIR).release(LAB)


def test_remove_finds_what_a_dead_deploy_left_by_the_labs_identity_check_mode_first(leftovers):
    path, network, names = leftovers
    checked = run_playbook("remove.yml", path, "--check", "--diff")
    assert checked.returncode == 0, checked.failure_messages() or checked.stderr
    assert checked.changed(), "check mode reported nothing to remove"
    assert sorted(still_there(names)) == sorted(names.values()), "check mode removed something"
    assert (
        network["bridge"]
        in subprocess.run(
            ["ovs-vsctl", "list-br"], capture_output=True, text=True, check=True
        ).stdout.split()
    )

    remove(path)
    assert still_there(names) == []
    assert_no_leftovers(LAB)
    assert LAB not in Registry(DEFAULT_STATE_DIR).held()

    again = remove(path)
    assert again.changed() == {}, "removing a lab that is not there changed something"
