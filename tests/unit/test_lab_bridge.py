"""What ltb_lab_bridge changes on a hypervisor: nothing when the bridge and management port
are as the lab wants them, only what differs otherwise (the same list check mode reports)."""

from __future__ import annotations

from ltb.module_utils import load

bridge_module = load("ltb_lab_bridge")

WANTED = {
    "lab": "br",
    "bridge": "ltb-abc123",
    "datapath_type": "netdev",
    "mgmt_port": "ltm-abc123",
    "mgmt_vlan": 1,
    "mgmt_gateway": "172.21.9.1/24",
}
BRIDGE = {
    "name": "ltb-abc123",
    "datapath_type": "netdev",
    "other_config": {"forward-bpdu": "true"},
    "external_ids": {"ltb-lab": "br"},
}
PORT = {"name": "ltm-abc123", "tag": 1, "external_ids": {"ltb-lab": "br", "ltb-role": "management"}}
INTERFACE = {"name": "ltm-abc123", "type": "internal"}


def test_a_bridge_as_wanted_changes_nothing():
    assert bridge_module.bridge_changes(WANTED, BRIDGE, PORT, INTERFACE) == ([], [])


def test_a_new_lab_gets_bridge_and_management_port_in_one_transaction():
    commands, actions = bridge_module.bridge_changes(WANTED, None, None, None)
    assert commands == [
        ["--may-exist", "add-br", "ltb-abc123"],
        ["set", "Bridge", "ltb-abc123", "datapath_type=netdev",
         "other_config:forward-bpdu=true", "external_ids:ltb-lab=br"],
        ["--may-exist", "add-port", "ltb-abc123", "ltm-abc123"],
        ["set", "Port", "ltm-abc123", "tag=1",
         "external_ids:ltb-lab=br", "external_ids:ltb-role=management"],
        ["set", "Interface", "ltm-abc123", "type=internal"],
    ]  # fmt: skip
    assert actions[0] == "create bridge ltb-abc123"


def test_only_what_differs_is_set():
    system = {**BRIDGE, "datapath_type": "system"}
    moved = {**PORT, "tag": 7}
    commands, _ = bridge_module.bridge_changes(WANTED, system, moved, INTERFACE)
    assert commands == [
        ["set", "Bridge", "ltb-abc123", "datapath_type=netdev"],
        ["set", "Port", "ltm-abc123", "tag=1"],
    ]
