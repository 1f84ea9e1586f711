#!/usr/bin/python
# LTB module: old builds of the VM image that nothing uses any more.
from __future__ import annotations

DOCUMENTATION = r"""
module: ltb_vm_image_builds
short_description: Remove the builds of a VM image that are neither current nor in use
description:
  - Runs on the hypervisor with the Python that has the ltb package (the platform's venv);
    the work is done by C(ltb.vm_images), which says what a build is and when it is in use.
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

from ansible.module_utils.basic import AnsibleModule

try:
    from ltb import vm_images
except ImportError as import_error:  # pragma: no cover - shown to the operator
    LTB_IMPORT_ERROR = import_error
else:
    LTB_IMPORT_ERROR = None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            image_dir=dict(type="path", required=True),
            name=dict(type="str", required=True),
            state_dir=dict(type="path", default="/var/lib/ltb"),
        ),
        supports_check_mode=True,
    )
    if LTB_IMPORT_ERROR is not None:
        module.fail_json(msg=f"the ltb package is not importable ({LTB_IMPORT_ERROR}); run make up")
    p = module.params
    where = (Path(p["image_dir"]), p["name"], Path(p["state_dir"]))
    try:
        if module.check_mode:
            removed = [str(build) for build in vm_images.unused_builds(*where)]
        else:
            removed = vm_images.prune_builds(*where)
    except (OSError, RuntimeError) as error:
        module.fail_json(msg=f"old builds of VM image {p['name']} not removed: {error}")
    module.exit_json(changed=bool(removed), removed=removed)


if __name__ == "__main__":
    main()
