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

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.ltb_links import port_states, wire
from ansible.module_utils.ltb_ovs import OvsError


def main():
    module = AnsibleModule(
        argument_spec=dict(
            lab=dict(type="str", required=True),
            bridge=dict(type="str", required=True),
            ports=dict(type="list", elements="dict", required=True),
        ),
        supports_check_mode=True,
    )
    lab, bridge, wanted = (module.params[key] for key in ("lab", "bridge", "ports"))
    for number, port in enumerate(wanted):
        absent = [key for key in ("name", "vlan", "node", "interface") if port.get(key) is None]
        if absent:
            module.fail_json(msg=f"ports[{number}] has no {', '.join(absent)}: {port!r}")
    try:
        # In check mode the node modules made no interface: wire all that deploy would make.
        todo, missing, current = wire(lab, bridge, wanted, module.check_mode)
    except OvsError as error:
        module.fail_json(msg=f"lab {lab!r}: links not wired: {error}")
    result = dict(
        changed=bool(todo),
        ports=[port["name"] for port in todo],
        missing=[f"{p['node']}:{p['interface']} ({p['name']})" for p in missing],
    )
    if module._diff and todo:
        states = [port_states(port, current) for port in todo]
        result["diff"] = dict(
            before="".join(before + "\n" for before, _ in states),
            after="".join(after + "\n" for _, after in states),
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
