# LTB module_utils: a lab's bridge, its management port on the hypervisor and its kept state
# (the ltb_lab_bridge module's work, module_utils/ltb_module.py). Standard library only.
import json
import os
import subprocess
from ipaddress import IPv4Network

from ansible.module_utils.ltb_lab_absent import network_absent
from ansible.module_utils.ltb_lab_state import allocation_text, keep_lab_state
from ansible.module_utils.ltb_names import LAB_NAME
from ansible.module_utils.ltb_ovs import OvsError, rows, transaction
from ansible.module_utils.ltb_routes import ip_json, subnet_conflicts
from ansible.module_utils.ltb_veth import VethError
from ansible.module_utils.ltb_module import failure


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


def subnet_conflicts_here(p):
    """What uses the management subnet on this hypervisor (a lab must not deploy there)."""
    subnet = IPv4Network(p["mgmt_subnet"])
    return subnet, subnet_conflicts(
        subnet, p["mgmt_port"], ip_json("route", "show", "table", "all"), ip_json("addr", "show")
    )


# The ltb_lab_bridge module's arguments and result (module_utils/ltb_module.py).
MODULE_SPEC = dict(
    argument_spec=dict(
        lab=dict(type="str", required=True),
        bridge=dict(type="str", required=True),
        datapath_type=dict(type="str"),
        mgmt_port=dict(type="str"),
        mgmt_vlan=dict(type="int"),
        mgmt_gateway=dict(type="str"),
        tag=dict(type="str"),
        state_dir=dict(type="path"),
        mgmt_subnet=dict(type="str"),
        topology=dict(type="str"),
        state=dict(type="str", choices=["present", "absent"], default="present"),
    ),
    required_if=[
        ("state", "present", ("datapath_type", "mgmt_port", "mgmt_vlan", "mgmt_gateway")),
        ("state", "absent", ("tag", "state_dir")),
    ],
    supports_check_mode=True,
)


def outcome(p, check_mode, diff=False):
    """The lab's bridge, management port and kept state made (or removed), only what differs;
    the diff is always there (Ansible shows it only with --diff)."""

    keep = p["state"] == "present" and p["state_dir"] is not None
    if (p["state"] == "absent" or keep) and not LAB_NAME.fullmatch(p["lab"]):
        return failure(f"lab name {p['lab']!r} is not a lab name: nothing changed")
    if keep:
        absent = [k for k in ("tag", "mgmt_subnet", "topology") if p[k] is None]
        if absent:
            return failure(f"state_dir is given, but not {', '.join(absent)}")
    try:
        columns = ("name", "datapath_type", "other_config", "external_ids")
        bridge = next(iter(rows("Bridge", columns, f"name={p['bridge']}")), None)
        owner = ((bridge or {}).get("external_ids") or {}).get("ltb-lab", "")
        if owner not in ("", p["lab"]):
            return failure(
                f"Open vSwitch bridge {p['bridge']} belongs to lab {owner!r}, not "
                f"{p['lab']!r}: the allocation registry does not hold that lab (another "
                f"controller deployed it, or the registry lost it). Remove lab {owner!r} "
                "first, or rename one of the labs."
            )
        if p["state"] == "absent":
            actions = network_absent(
                p["lab"], p["bridge"], bridge, p["tag"], p["state_dir"], check_mode
            )
            return dict(
                changed=bool(actions),
                actions=actions,
                diff={"before": "".join(a + "\n" for a in actions), "after": ""},
            )
        if keep:
            # Before anything is made.
            subnet, conflicts = subnet_conflicts_here(p)
            if conflicts:
                return failure(
                    f"the management subnet {subnet} of lab {p['lab']!r} is in use on this "
                    f"hypervisor: {'; '.join(conflicts)}. Set another mgmt.ipv4_subnet in the "
                    "topology (or remove what uses it).",
                    conflicts=conflicts,
                )
        port = next(
            iter(rows("Port", ("name", "tag", "external_ids"), f"name={p['mgmt_port']}")), None
        )
        interface = next(iter(rows("Interface", ("name", "type"), f"name={p['mgmt_port']}")), None)
        commands, actions = bridge_changes(p, bridge, port, interface)
        if commands and not check_mode:
            transaction(*commands)
        actions += host_changes(p, make=not check_mode)
        if keep:
            allocation = allocation_text(p["lab"], p["tag"], str(IPv4Network(p["mgmt_subnet"])))
            actions += keep_lab_state(
                p["state_dir"], p["lab"], p["topology"], allocation, check_mode
            )
    except (OvsError, VethError, OSError, ValueError, RuntimeError) as error:
        verb = "removed" if p["state"] == "absent" else "made"
        return failure(f"lab {p['lab']!r}: network not {verb}: {error}")
    return dict(
        changed=bool(actions),
        actions=actions,
        diff={"before": "", "after": "".join(action + "\n" for action in actions)},
    )
