# LTB module_utils: a lab's links as ports of its bridge (standard library only; shipped to
# the hypervisor with ltb_lab_links).
"""Which ports of a lab bridge must change so that every node interface is an access port of
its link's VLAN, and the one ovs-vsctl transaction that changes them.

A wanted port is a dict of the controller's `ltb.links.port_specs`: name (the hypervisor
end of the interface), vlan, node, interface. The ports' `external_ids` carry the lab's
identity (ltb-lab, ltb-node, ltb-interface); other external_ids (libvirt's) are left alone.
"""

from __future__ import annotations


def port_identity(lab, port):
    return {"ltb-lab": lab, "ltb-node": port["node"], "ltb-interface": port["interface"]}


def ports_to_change(lab, wanted, current):
    """The wanted ports that are missing from the bridge, in another VLAN, or without the
    lab's identity. `current` is {name: (tag, external_ids)} (ltb_ovs.bridge_ports)."""
    todo = []
    for port in wanted:
        tag, ids = current.get(port["name"], (None, {}))
        if (
            port["name"] not in current
            or tag != port["vlan"]
            or any(ids.get(key) != value for key, value in port_identity(lab, port).items())
        ):
            todo.append(port)
    return todo


def port_commands(bridge, lab, ports):
    """ovs-vsctl commands (for ltb_ovs.transaction) that make every port as it is wanted."""
    commands = []
    for port in ports:
        ids = [f"external_ids:{key}={value}" for key, value in port_identity(lab, port).items()]
        commands.append(["--may-exist", "add-port", bridge, port["name"]])
        commands.append(["set", "Port", port["name"], f"tag={port['vlan']}", *ids])
    return commands


def port_states(port, current):
    """The port as it is and as it will be, one line each (the module's diff)."""
    where = f"{port['name']} ({port['node']}:{port['interface']})"
    if port["name"] not in current:
        before = f"{where}: absent"
    else:
        tag, ids = current[port["name"]]
        before = f"{where}: tag={tag} lab={ids.get('ltb-lab')} node={ids.get('ltb-node')}"
    return before, f"{where}: tag={port['vlan']}"
