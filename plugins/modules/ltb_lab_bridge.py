#!/usr/bin/python
# LTB module: a lab's bridge and the hypervisor's port on the lab's management network.
from __future__ import annotations

DOCUMENTATION = r"""
module: ltb_lab_bridge
short_description: The Open vSwitch bridge of a lab and the hypervisor's management port on it
description:
  - Runs on the hypervisor with any Python 3 (standard library and module_utils only); the
    names and addresses are the controller's (C(ltb.inventory.lab_network_vars)).
  - Reads the bridge and the management port in one ovs-vsctl call each and makes what
    differs in one transaction - the bridge with its datapath type, forwarding the nodes'
    link-local protocols (STP, LLDP, LACP; a link is a wire) and the lab's identity; the
    management port, internal, in the management VLAN - then gives the port the lab's
    gateway address, brings it up and keeps the hypervisor from forwarding what comes
    from it.
  - Fails, changing nothing, when the bridge belongs to another lab. Check mode reports
    what would change, with a diff.
options:
  lab:
    description: Lab name.
    type: str
    required: true
  bridge:
    description: The lab's bridge.
    type: str
    required: true
  datapath_type:
    description: The bridge's datapath (C(system) on a kernel with openvswitch, else C(netdev)).
    type: str
    required: true
  mgmt_port:
    description: The hypervisor's port on the management network.
    type: str
    required: true
  mgmt_vlan:
    description: The management VLAN.
    type: int
    required: true
  mgmt_gateway:
    description: The gateway address of the management network, with its prefix length.
    type: str
    required: true
"""

RETURN = r"""
actions:
  description: What was changed (in check mode, what would be).
  type: list
  elements: str
  returned: always
"""

import json
import os
import subprocess

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.ltb_ovs import OvsError, rows, transaction


def ip(*args):
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise OvsError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def bridge_changes(p, bridge, port, interface):
    """ovs-vsctl commands for what differs, and their descriptions."""
    commands, actions = [], []
    ids = {"ltb-lab": p["lab"]}
    if bridge is None:
        commands.append(["--may-exist", "add-br", p["bridge"]])
        actions.append(f"create bridge {p['bridge']}")
    have = bridge or {}
    settings = []
    if have.get("datapath_type") != p["datapath_type"]:
        settings.append(f"datapath_type={p['datapath_type']}")
    if (have.get("other_config") or {}).get("forward-bpdu") != "true":
        settings.append("other_config:forward-bpdu=true")
    if (have.get("external_ids") or {}).get("ltb-lab") != p["lab"]:
        settings.append(f"external_ids:ltb-lab={p['lab']}")
    if settings:
        commands.append(["set", "Bridge", p["bridge"], *settings])
        actions.append(f"bridge {p['bridge']}: {' '.join(settings)}")
    if port is None:
        commands.append(["--may-exist", "add-port", p["bridge"], p["mgmt_port"]])
        actions.append(f"add management port {p['mgmt_port']}")
    port_ids = {**ids, "ltb-role": "management"}
    have_ids = (port or {}).get("external_ids") or {}
    port_settings = []
    if (port or {}).get("tag") != p["mgmt_vlan"]:
        port_settings.append(f"tag={p['mgmt_vlan']}")
    port_settings += [f"external_ids:{k}={v}" for k, v in port_ids.items() if have_ids.get(k) != v]
    if port_settings:
        commands.append(["set", "Port", p["mgmt_port"], *port_settings])
        actions.append(f"port {p['mgmt_port']}: {' '.join(port_settings)}")
    if (interface or {}).get("type") != "internal":
        commands.append(["set", "Interface", p["mgmt_port"], "type=internal"])
        actions.append(f"interface {p['mgmt_port']}: type=internal")
    return commands, actions


def host_changes(p, make):
    """The management port's address, link state and forwarding; made when `make`."""
    actions = []
    port, gateway = p["mgmt_port"], p["mgmt_gateway"]
    exists = os.path.exists(f"/sys/class/net/{port}")
    shown = json.loads(ip("-j", "addr", "show", "dev", port) or "[]") if exists else [{}]
    addresses = {a.get("local") for a in shown[0].get("addr_info", [])}
    if gateway.split("/")[0] not in addresses:
        actions.append(f"address {gateway} on {port}")
        if make:
            ip("addr", "add", gateway, "dev", port)
    if "UP" not in shown[0].get("flags", []):
        actions.append(f"{port} up")
        if make:
            ip("link", "set", port, "up")
    # Nodes reach the hypervisor on their management network, never through it: without this
    # a node that routes another lab's subnet via its gateway is stopped only by the host's
    # FORWARD policy (Docker sets DROP; a hypervisor without Docker may not).
    setting = f"/proc/sys/net/ipv4/conf/{port}/forwarding"
    forwarding = "1"
    if exists:
        with open(setting) as file:
            forwarding = file.read().strip()
    if forwarding != "0":
        actions.append(f"no forwarding from {port}")
        if make:
            with open(setting, "w") as file:
                file.write("0")
    return actions


def main():
    module = AnsibleModule(
        argument_spec=dict(
            lab=dict(type="str", required=True),
            bridge=dict(type="str", required=True),
            datapath_type=dict(type="str", required=True),
            mgmt_port=dict(type="str", required=True),
            mgmt_vlan=dict(type="int", required=True),
            mgmt_gateway=dict(type="str", required=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        columns = ("name", "datapath_type", "other_config", "external_ids")
        bridge = next(iter(rows("Bridge", columns, f"name={p['bridge']}")), None)
        owner = ((bridge or {}).get("external_ids") or {}).get("ltb-lab", "")
        if owner not in ("", p["lab"]):
            module.fail_json(
                msg=(
                    f"Open vSwitch bridge {p['bridge']} belongs to lab {owner!r}, not "
                    f"{p['lab']!r}: the allocation registry does not hold that lab (another "
                    f"controller deployed it, or the registry lost it). Remove lab {owner!r} "
                    "first, or rename one of the labs."
                )
            )
        port = next(
            iter(rows("Port", ("name", "tag", "external_ids"), f"name={p['mgmt_port']}")), None
        )
        interface = next(iter(rows("Interface", ("name", "type"), f"name={p['mgmt_port']}")), None)
        commands, actions = bridge_changes(p, bridge, port, interface)
        if commands and not module.check_mode:
            transaction(*commands)
        actions += host_changes(p, make=not module.check_mode)
    except (OvsError, OSError, ValueError) as error:
        module.fail_json(msg=f"lab {p['lab']!r}: network not made: {error}")
    module.exit_json(
        changed=bool(actions),
        actions=actions,
        diff={"before": "", "after": "".join(action + "\n" for action in actions)},
    )


if __name__ == "__main__":
    main()
