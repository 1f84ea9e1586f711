#!/usr/bin/python
# LTB module: no libvirt domain of the given labs is left on the hypervisor (remove's VM sweep).
from __future__ import annotations

DOCUMENTATION = r"""
module: ltb_lab_domains
short_description: Removes every libvirt domain whose name starts with a lab's node prefix
description:
  - Runs on the hypervisor with any Python 3 (standard library only) and C(virsh).
  - Reads the names of all domains once (C(virsh list --all --name)); every domain whose name
    starts with one of O(prefixes) (C(Lab.node_name_prefix) from ltb.model, C(ltb-<lab>.)) is
    stopped if it runs and undefined with its managed save, snapshot and checkpoint metadata
    and NVRAM - also domains the topology no longer names or a failed deploy left. Several at
    a time. With no such domain, that one read is all it does (a lab without VMs costs one
    C(virsh) process). Without C(virsh) on the hypervisor no domain can exist, so there is
    nothing to do.
  - Check mode reports what would be removed, with a diff.
options:
  prefixes:
    description: Node name prefixes of the labs whose domains go (C(ltb_labs_here[].node_prefix)).
    type: list
    elements: str
    required: true
  libvirt_uri:
    description: The libvirt connection.
    type: str
    default: qemu:///system
  state:
    description: Only V(absent).
    type: str
    choices: [absent]
    default: absent
"""

RETURN = r"""
actions:
  description: What was removed (in check mode, what would be).
  type: list
  elements: str
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.ltb_lab_absent import RemoveError, domains_absent


def main():
    module = AnsibleModule(
        argument_spec=dict(
            prefixes=dict(type="list", elements="str", required=True),
            libvirt_uri=dict(type="str", default="qemu:///system"),
            state=dict(type="str", choices=["absent"], default="absent"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        actions = domains_absent(p["prefixes"], p["libvirt_uri"], module.check_mode)
    except (RemoveError, OSError) as error:
        module.fail_json(msg=f"domains of {', '.join(p['prefixes'])} not removed: {error}")
    module.exit_json(
        changed=bool(actions),
        actions=actions,
        diff={"before": "".join(a + "\n" for a in actions), "after": ""},
    )


if __name__ == "__main__":
    main()
