#!/usr/bin/python
# LTB module: the links of a deployed lab, as ports of its bridge.
from __future__ import annotations

DOCUMENTATION = r"""
module: ltb_lab_links
short_description: Every node interface of a lab is an access port of its link's VLAN
description:
  - Runs on the hypervisor with any Python 3 (standard library and module_utils only). The
    wanted ports are computed on the controller from the lab model (C(ltb.links.port_specs),
    given as C(ltb_lab_network.ports)).
  - One ovs-vsctl read and at most one transaction for the whole lab. Ports are added to the
    lab bridge, tagged with their link's VLAN and given the lab's identity (external_ids
    C(ltb-lab), C(ltb-node), C(ltb-interface)); a port already so is left alone.
  - Interfaces that do not exist on the hypervisor (a node that failed to deploy) are skipped
    and returned in RV(missing). Check mode reports the ports that would change, with a diff,
    counting every interface as made (deploy's node modules make them before).
options:
  lab:
    description: Lab name.
    type: str
    required: true
  bridge:
    description: The lab's bridge.
    type: str
    required: true
  ports:
    description: The wanted ports, each with C(name) (hypervisor interface), C(vlan), C(node)
      and C(interface) (other keys are ignored).
    type: list
    elements: dict
    required: true
"""

RETURN = r"""
ports:
  description: The ports added or changed (in check mode, those that would be).
  type: list
  elements: str
  returned: always
missing:
  description: Node interfaces with no hypervisor interface, as C(node:interface (port)).
  type: list
  elements: str
  returned: always
"""

from ansible.module_utils.ltb_lab_links import MODULE_SPEC, outcome
from ansible.module_utils.ltb_module import run


def main():
    run(MODULE_SPEC, outcome)


if __name__ == "__main__":
    main()
