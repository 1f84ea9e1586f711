# LTB module_utils: a lab's links as ports of its bridge (standard library only; shipped to
# the hypervisor with ltb_lab_links).
"""Which ports of a lab bridge must change so that every node interface is an access port of
its link's VLAN, and the one ovs-vsctl transaction that changes them.

A wanted port is a dict of the controller's `ltb.links.port_specs`: name (the hypervisor
end of the interface), vlan, node, interface. The ports' `external_ids` carry the lab's
identity (ltb-lab, ltb-node, ltb-interface); other external_ids (libvirt's) are left alone.
"""

from __future__ import annotations

from ansible.module_utils.ltb_ovs import bridge_ports, interface_exists, transaction


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


def wire(lab, bridge, wanted, check_mode):
    """Makes every wanted port whose interface exists on the hypervisor as it is wanted, in
    one ovs-vsctl read and at most one transaction (ltb_lab_links, and ltb_lab_containers for
    a lab it does whole). Check mode counts every interface as made (deploy's node modules
    make them before). Returns (ports changed, wanted ports without an interface, the
    bridge's ports before). Raises ltb_ovs.OvsError."""
    present = [p for p in wanted if check_mode or interface_exists(p["name"])]
    current = bridge_ports(bridge)
    todo = ports_to_change(lab, present, current)
    if todo and not check_mode:
        transaction(*port_commands(bridge, lab, todo))
    return todo, [p for p in wanted if p not in present], current
