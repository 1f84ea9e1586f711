#!/usr/bin/python
# LTB module: old builds of the VM image that nothing uses any more.
from __future__ import annotations

DOCUMENTATION = r"""
module: ltb_vm_image_builds
short_description: Remove the builds of a VM image that are neither current nor in use
description:
  - Runs on the hypervisor with any Python 3; the work is done by the module_utils
    C(ltb_vm_images), which says what a build is and when it is in use.
  - A build is kept when the image's link points to it, or when a VM overlay of a lab or a
    snapshot's copy of one is based on its disk. Check mode reports what would go.
options:
  image_dir:
    description: Directory of the VM images (holds the link O(name) and the builds).
    type: path
    required: true
  name:
    description: Name of the image (the link); its builds are C(<name>-*).
    type: str
    required: true
  state_dir:
    description: LTB's state directory on the hypervisor (labs and snapshots).
    type: path
    default: /var/lib/ltb
"""

RETURN = r"""
removed:
  description: The builds removed (in check mode, those that would be).
  type: list
  elements: str
  returned: always
"""

from pathlib import Path

from ansible.module_utils.ltb_vm_images import prune_builds, unused_builds
from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(
        argument_spec=dict(
            image_dir=dict(type="path", required=True),
            name=dict(type="str", required=True),
            state_dir=dict(type="path", default="/var/lib/ltb"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    where = (Path(p["image_dir"]), p["name"], Path(p["state_dir"]))
    try:
        if module.check_mode:
            removed = [str(build) for build in unused_builds(*where)]
        else:
            removed = prune_builds(*where)
    except (OSError, RuntimeError) as error:
        module.fail_json(msg=f"old builds of VM image {p['name']} not removed: {error}")
    module.exit_json(changed=bool(removed), removed=removed)


if __name__ == "__main__":
    main()
