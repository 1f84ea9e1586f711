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
  - Acts on the topology the lab was deployed from (kept on the hypervisor by deploy), so it
    mirrors exactly what deploy built. Several mirrors of a lab can exist at once; removing
    the lab removes its mirrors.
  - Runs on the hypervisor with the Python that has the ltb package (the platform's venv).
options:
  lab:
    description: Name of the running lab.
    type: str
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
  state_dir:
    description: LTB state directory on the hypervisor.
    type: path
    default: /var/lib/ltb
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

from ansible.module_utils.basic import AnsibleModule

try:
    from ltb.deployed import LabNotDeployed, load_deployed_lab
    from ltb.mirror import MirrorError, ensure_mirror, mirror_spec, remove_mirror
except ImportError as error:  # pragma: no cover - shown to the operator
    LTB_IMPORT_ERROR = error
else:
    LTB_IMPORT_ERROR = None


def main():
    module = AnsibleModule(
        argument_spec={
            "lab": {"type": "str", "required": True},
            "endpoint": {"type": "str", "required": True},
            "scope": {"type": "str", "choices": ["link", "interface"], "default": "link"},
            "name": {"type": "str"},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "state_dir": {"type": "path", "default": "/var/lib/ltb"},
        },
        supports_check_mode=False,
    )
    if LTB_IMPORT_ERROR is not None:
        module.fail_json(msg=f"the ltb package is not importable here: {LTB_IMPORT_ERROR}")
    params = module.params
    try:
        lab = load_deployed_lab(params["lab"], params["state_dir"])
        spec = mirror_spec(lab, params["scope"], params["endpoint"], params["name"])
        change = ensure_mirror if params["state"] == "present" else remove_mirror
        actions = change(spec)
    except (LabNotDeployed, MirrorError) as error:
        module.fail_json(msg=str(error))
    module.exit_json(
        changed=bool(actions),
        actions=actions,
        capture_interface=spec.capture_interface,
        mirrored=spec.description,
    )


if __name__ == "__main__":
    main()
