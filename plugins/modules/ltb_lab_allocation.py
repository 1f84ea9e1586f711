#!/usr/bin/python
# LTB module: a lab's allocation (tag and management subnet) released on the controller.
from __future__ import annotations

DOCUMENTATION = r"""
module: ltb_lab_allocation
short_description: A lab's tag and management subnet released in the controller's registry
description:
  - Runs on the controller (delegate to it), whose Python has the ltb package (the registry is
    C(ltb.allocation.Registry)); its action plugin does it in Ansible's own process.
  - After the lab is gone, the lab's entry of the allocation registry O(registry) is removed,
    so another lab can take its tag and subnet.
  - The check that the management subnet is free on the hypervisor, and the lab's
    C(allocation.json) there, are M(ltb_lab_bridge)'s.
options:
  lab:
    description: Lab name.
    type: str
    required: true
  state:
    description: Only V(absent).
    type: str
    choices: [absent]
    default: absent
  registry:
    description:
      - The controller's allocation registry file; empty for a run of a job, whose allocation
        the lab store holds (nothing is released here).
    type: path
"""

RETURN = r"""
changed:
  description: Whether the registry held the lab (in check mode, whether it would be released).
  type: bool
  returned: always
"""

from pathlib import Path

from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(
        argument_spec=dict(
            lab=dict(type="str", required=True),
            state=dict(type="str", choices=["absent"], default="absent"),
            registry=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    if not module.params["registry"]:
        # A run of a job: the lab store holds the lab's allocation and releases it.
        module.exit_json(changed=False)
    try:
        # On the controller only: the registry and its lock are ltb's.
        from ltb.allocation import release_from_file

        changed = release_from_file(
            module.params["lab"], Path(module.params["registry"]), module.check_mode
        )
    except (RuntimeError, ValueError, OSError, ImportError) as error:
        module.fail_json(msg=str(error))
    module.exit_json(changed=changed)


if __name__ == "__main__":
    main()
