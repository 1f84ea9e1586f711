"""A lab's links on its bridge, as the controller wants them: every node interface on a link
is an access port of the link's VLAN, every management interface one of VLAN 1.

`port_specs` is the desired state the controller computes from the model and passes to the
hypervisor (`ltb_lab_network.ports`, see ltb.inventory.lab_network_vars). The module
`ltb_lab_links` compares it with the bridge's ports and changes the difference in one
ovs-vsctl transaction (plugins/module_utils/ltb_links.py); `ltb_mirror` and ltb.mirror find
the ports of a link in the same list.
"""

from __future__ import annotations

from typing import Any

from ltb.model import MGMT_INTERFACE, MGMT_VLAN, Lab


def port_specs(lab: Lab) -> list[dict[str, Any]]:
    """The port of every management interface and every node interface on a link: its
    hypervisor-side name, VLAN, node, interface and link (None for management)."""
    link_names = {link.vlan: link.name for link in lab.links}
    ports: list[dict[str, Any]] = []
    for node in lab.nodes:
        ports.append(
            {
                "name": node.mgmt_host_name,
                "vlan": MGMT_VLAN,
                "node": node.name,
                "interface": MGMT_INTERFACE,
                "link": None,
            }
        )
        ports.extend(
            {
                "name": interface.host_name,
                "vlan": interface.vlan,
                "node": node.name,
                "interface": interface.name,
                "link": link_names[interface.vlan],
            }
            for interface in node.interfaces
            if interface.vlan is not None
        )
    return ports
