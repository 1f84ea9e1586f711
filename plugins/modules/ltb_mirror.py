#!/usr/bin/python
# LTB module: a port mirror of a running lab's link or interface.
from __future__ import annotations

DOCUMENTATION = r"""
module: ltb_mirror
short_description: Mirror a link or an interface of a running LTB lab to a mirror port
description:
  - Copies the traffic of one node interface, or of a whole link, to a mirror port of the
    lab (an Open vSwitch mirror whose output is a veth pair; tcpdump reads the hypervisor end,
    named in the C(capture_interface) result).
  - Selects from the lab's ports as the controller computed them from the lab model
    (C(ltb_lab_network.ports), C(ltb.links.port_specs)), so it mirrors exactly what deploy
    wired. Several mirrors of a lab can exist at once; removing the lab removes its mirrors.
  - Runs on the hypervisor with any Python 3 (standard library and module_utils only).
    Check mode reports what would change.
options:
  lab:
    description: Name of the running lab.
    type: str
    required: true
  tag:
    description: The lab's tag (in the names of the mirror port).
    type: str
    required: true
  bridge:
    description: The lab's bridge.
    type: str
    required: true
  ports:
    description: The lab's ports, each with C(name), C(vlan), C(node), C(interface) and
      C(link) (none for a management port).
    type: list
    elements: dict
    required: true
  endpoint:
    description: A node interface, C(node:interface), e.g. C(r1:eth1).
    type: str
    required: true
  scope:
    description: Mirror the interface alone, or the whole link it is on.
    type: str
    choices: [link, interface]
    default: link
  name:
    description: Mirror name, unique in the lab; default C(<scope>-<node>-<interface>).
    type: str
  state:
    description: Whether the mirror exists.
    type: str
    choices: [present, absent]
    default: present
"""

RETURN = r"""
capture_interface:
  description: Hypervisor interface that carries the mirrored traffic (for tcpdump).
  type: str
  returned: always
mirrored:
  description: What is mirrored, e.g. C(link r1:eth1--r2:eth1).
  type: str
  returned: always
actions:
  description: What was changed.
  type: list
  elements: str
  returned: always
"""

from ansible.module_utils.ltb_mirror_module import MODULE_SPEC, outcome
from ansible.module_utils.ltb_module import run


def main():
    run(MODULE_SPEC, outcome)


if __name__ == "__main__":
    main()
