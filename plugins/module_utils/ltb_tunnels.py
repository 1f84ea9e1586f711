# LTB module_utils: the VXLAN tunnel that joins a spread lab's bridge to its other hypervisors.
# Standard library only: Ansible ships this file to the hypervisor with the module.
"""One kernel VXLAN device per lab and hypervisor (VNI the lab's tag), a trunk port of the lab
bridge for the VLANs of the links that cross hypervisors, flooding unknown and broadcast frames
to every other hypervisor of the lab (an all-zeros forwarding entry per remote) and learning
where each node's MAC lives. One device, not one per remote: the kernel refuses two VXLAN
devices with one VNI on one port, and a bridge with a port per remote would loop frames
around three hypervisors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

from ansible.module_utils.ltb_ovs import vsctl
from ansible.module_utils.ltb_veth import (
    ALIAS_PREFIX,
    Netlink,
    VethError,
    delete_link,
    isolate_from_host,
)

FLOOD_MAC = "00:00:00:00:00:00"
SBIN = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")


def tunnel_alias(lab):
    """The device's alias: the lab's identity, so remove's interface sweep finds it."""
    return f"{ALIAS_PREFIX}{lab}:tunnel"


def read_tunnel(host, device):
    """What exists of the device: its VXLAN settings, alias, MTU, state and flood remotes;
    None when there is no such interface."""
    found = json.loads(host.run("-j", "-d", "link", "show") or "[]")
    record = next((r for r in found if r["ifname"] == device), None)
    if record is None:
        return None
    info = record.get("linkinfo", {})
    data = info.get("info_data", {})
    entries = json.loads(host.run_bridge("-j", "fdb", "show", "dev", device) or "[]")
    return {
        "kind": info.get("info_kind"),
        "vni": data.get("id"),
        "local": data.get("local"),
        "port": data.get("port"),
        "remote": data.get("remote"),
        "alias": record.get("ifalias", ""),
        "mtu": record.get("mtu"),
        "up": "UP" in record.get("flags", []),
        "remotes": sorted(e["dst"] for e in entries if e.get("mac") == FLOOD_MAC and "dst" in e),
    }


def read_port(device):
    """The device's Open vSwitch port: its bridge, trunks and external_ids; None if none."""
    bridge = port_bridge(device)
    if bridge is None:
        return None
    port = json.loads(
        vsctl("--format=json", "--columns=trunks,tag,external_ids", "list", "Port", device)
    )
    trunks, tag, ids = port["data"][0]
    return {
        "bridge": bridge,
        "trunks": sorted(trunks[1] if trunks[0] == "set" else [trunks]),
        "tag": tag if isinstance(tag, int) else None,
        "external_ids": dict(ids[1]),
    }


def port_bridge(device):
    """The bridge that has a port named `device`, or None."""
    found = json.loads(vsctl("--format=json", "--columns=name", "find", "Port", f"name={device}"))
    if not found["data"]:
        return None
    return vsctl("port-to-br", device).strip()


class Ip(Netlink):
    """`ip` on the hypervisor, and `bridge` (of the same iproute2) for forwarding entries."""

    def run_bridge(self, *args):
        done = subprocess.run([_bridge_binary(), *args], capture_output=True, text=True)
        if done.returncode != 0:
            raise VethError(f"bridge {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout


def _bridge_binary():
    path = shutil.which("bridge", path=os.pathsep.join(SBIN))
    if path is None:
        raise VethError("bridge (iproute2) is not installed on the hypervisor")
    return path


def ensure_present(want, check_mode):
    """Makes the lab's tunnel device and its bridge port be as `want` says (lab, bridge,
    device, vni, port, mtu, local, remotes, vlans). Returns (actions, before, after)."""
    host = Ip()
    device = want["device"]
    before = read_tunnel(host, device)
    actions, commands = [], []
    alias = tunnel_alias(want["lab"])
    settings = {
        "kind": "vxlan",
        "vni": want["vni"],
        "local": want["local"],
        "port": want["port"],
        "remote": None,
    }
    have = before
    if have is not None and any(have[k] != v for k, v in settings.items()):
        actions.append(f"delete {device} (its VXLAN settings differ)")
        if not check_mode:
            delete_link(host, device)
        have = None
    if have is None:
        actions.append(f"create {device} (VXLAN {want['vni']} from {want['local']})")
        commands.append(
            [
                "link", "add", device, "type", "vxlan", "id", str(want["vni"]),
                "local", want["local"], "dstport", str(want["port"]),
            ]
        )  # fmt: skip
        have = {"alias": "", "mtu": None, "up": False, "remotes": []}
    if have["alias"] != alias:
        commands.append(["link", "set", device, "alias", alias])
    if have["mtu"] != want["mtu"]:
        commands.append(["link", "set", device, "mtu", str(want["mtu"])])
    if not have["up"]:
        commands.append(["link", "set", device, "up"])
    if commands and before is not None and actions == []:
        actions.append(f"set {device} alias, MTU {want['mtu']}, up")
    remotes = sorted(want["remotes"])
    fdb = []
    for remote in sorted(set(remotes) - set(have["remotes"])):
        actions.append(f"flood to {remote}")
        fdb.append(["fdb", "append", FLOOD_MAC, "dev", device, "dst", remote])
    for remote in sorted(set(have["remotes"]) - set(remotes)):
        actions.append(f"stop flooding to {remote}")
        fdb.append(["fdb", "del", FLOOD_MAC, "dev", device, "dst", remote])

    port = read_port(device) if before is not None else None
    ids = {"ltb-lab": want["lab"], "ltb-role": "tunnel"}
    vlans = sorted(want["vlans"])
    port_ok = (
        port is not None
        and port["bridge"] == want["bridge"]
        and port["trunks"] == vlans
        and port["tag"] is None
        and all(port["external_ids"].get(k) == v for k, v in ids.items())
    )
    if not port_ok:
        actions.append(f"{device} is a port of {want['bridge']} trunking VLANs {vlans}")

    after = {
        **settings,
        "alias": alias,
        "mtu": want["mtu"],
        "up": True,
        "remotes": remotes,
        "bridge": want["bridge"],
        "vlans": vlans,
    }
    if check_mode or not actions:
        return actions, before, after
    host.batch(commands)
    for command in fdb:
        host.run_bridge(*command)
    actions.extend(isolate_from_host(device))
    if not port_ok:
        _set_port(want["bridge"], device, vlans, ids, port)
    return actions, before, after


def _set_port(bridge, device, vlans, ids, port):
    args = []
    if port is not None and port["bridge"] != bridge:
        args += ["--", "del-port", port["bridge"], device]
    trunks = "[" + ",".join(str(v) for v in vlans) + "]"
    args += ["--", "--may-exist", "add-port", bridge, device]
    args += ["--", "set", "Port", device, f"trunks={trunks}", "tag=[]"]
    args += [f"external_ids:{k}={v}" for k, v in ids.items()]
    vsctl(*args)


def ensure_absent(lab, device, check_mode):
    """Deletes the lab's tunnel device (only if it carries the lab's alias) and its port."""
    host = Ip()
    before = read_tunnel(host, device)
    actions = []
    if before is not None and before["alias"] in ("", tunnel_alias(lab)):
        actions.append(f"delete {device}")
        if not check_mode:
            delete_link(host, device)
    if (before is None or actions) and port_bridge(device) is not None:
        actions.append(f"{device} is no port")
        if not check_mode:
            vsctl("--if-exists", "del-port", device)
    return actions, before
