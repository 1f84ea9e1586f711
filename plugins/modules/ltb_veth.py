#!/usr/bin/python
# LTB module: the veth pairs that join a container node to its lab bridge.
from __future__ import annotations

DOCUMENTATION = r"""
module: ltb_veth
short_description: Veth pairs between the hypervisor and a node's network namespace
description:
  - With O(state=present), makes every listed interface exist inside the network namespace
    of process O(pid) under its lab name, with exactly the listed addresses and up, its peer
    on the hypervisor named O(interfaces[].host_name), up and labelled with the interface
    alias C(ltb:<lab>:<node>:<interface>). One call handles all interfaces of a node.
  - With O(state=absent), deletes every hypervisor interface labelled with lab O(lab)
    (and so its peer), whatever node it belonged to, and every unlabelled one whose name is
    a host-end name of the lab's tag O(tag) (a run killed between creating a veth and
    labelling it leaves one, as the kernel ignores an alias given at creation). Used by remove
    to leave nothing behind.
  - The hypervisor end is cut off from the hypervisor's own IP stack (no ARP replies, no IPv4
    or IPv6 accepted), so lab nodes cannot reach the hypervisor through a lab link.
  - Converges; check mode is supported. Calls C(ip) and C(nsenter) with argument lists,
    never through a shell (plugins/module_utils/ltb_veth.py, shared with ltb_lab_containers).
options:
  lab:
    description: Lab name, recorded in the alias of each hypervisor-side interface.
    type: str
    required: true
  node:
    description: Node name (required with O(state=present)).
    type: str
  pid:
    description: A process in the node's network namespace (the container's PID 1).
    type: int
  interfaces:
    description: Interfaces of the node.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Name inside the node.
        type: str
        required: true
      host_name:
        description: Name of the peer on the hypervisor (at most 15 characters).
        type: str
        required: true
      addresses:
        description: IPv4 and IPv6 addresses with prefix length.
        type: list
        elements: str
        default: []
  tag:
    description:
      - The lab's tag (C(Lab.tag), unique among the labs of the hypervisor). With
        O(state=absent), unlabelled interfaces named C(<v|m|t|x|c><tag><8 hex digits>) (the
        names C(ltb.model) and C(ltb.mirror) give host ends) are deleted too.
    type: str
  state:
    description: Whether the interfaces exist.
    type: str
    choices: [present, absent]
    default: present
"""

RETURN = r"""
actions:
  description: What was changed, one line per change.
  type: list
  elements: str
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.ltb_veth import VethError, ensure_absent, ensure_present


def main():
    module = AnsibleModule(
        argument_spec={
            "lab": {"type": "str", "required": True},
            "node": {"type": "str"},
            "pid": {"type": "int"},
            "interfaces": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "name": {"type": "str", "required": True},
                    "host_name": {"type": "str", "required": True},
                    "addresses": {"type": "list", "elements": "str", "default": []},
                },
            },
            "tag": {"type": "str"},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
        },
        required_if=[("state", "present", ("node", "pid"))],
        supports_check_mode=True,
    )
    params = module.params
    try:
        if params["state"] == "present":
            actions = ensure_present(
                params["lab"],
                params["node"],
                params["pid"],
                params["interfaces"],
                module.check_mode,
            )
        else:
            actions = ensure_absent(params["lab"], params["tag"], module.check_mode)
    except VethError as error:
        module.fail_json(msg=str(error))
    module.exit_json(changed=bool(actions), actions=actions)


if __name__ == "__main__":
    main()
