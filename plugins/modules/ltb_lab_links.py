#!/usr/bin/python
# LTB module: the links of a deployed lab, as ports of its bridge.
from __future__ import annotations

DOCUMENTATION = r"""
module: ltb_lab_links
short_description: Every node interface of a lab is an access port of its link's VLAN
description:
  - Runs on the hypervisor with the Python that has the ltb package (the platform's venv);
    the work is done by C(ltb.links), on the topology deploy kept for the lab.
  - One ovs-vsctl read and at most one transaction for the whole lab. Ports are added to the
    lab bridge, tagged with their link's VLAN and given the lab's identity (external_ids
    C(ltb-lab), C(ltb-node), C(ltb-interface)); a port already so is left alone.
  - Interfaces that do not exist on the hypervisor (a node that failed to deploy) are skipped
    and returned in RV(missing).
options:
  lab:
    description: Lab name.
    type: str
    required: true
  state_dir:
    description: LTB's state directory on the hypervisor.
    type: path
    default: /var/lib/ltb
"""

RETURN = r"""
ports:
  description: The ports added or changed.
  type: list
  elements: str
  returned: always
missing:
  description: Node interfaces with no hypervisor interface, as C(node:interface (port)).
  type: list
  elements: str
  returned: always
"""

from pathlib import Path

from ansible.module_utils.basic import AnsibleModule

try:
    from ltb import links
    from ltb.deployed import load_deployed_lab
    from ltb.topology import TopologyError
except ImportError as import_error:  # pragma: no cover - shown to the operator
    LTB_IMPORT_ERROR = import_error
else:
    LTB_IMPORT_ERROR = None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            lab=dict(type="str", required=True),
            state_dir=dict(type="path", default="/var/lib/ltb"),
        ),
        supports_check_mode=False,
    )
    if LTB_IMPORT_ERROR is not None:
        module.fail_json(msg=f"the ltb package is not importable ({LTB_IMPORT_ERROR}); run make up")
    try:
        lab = load_deployed_lab(module.params["lab"], Path(module.params["state_dir"]))
        wired = links.wire_lab(lab)
    except (links.LinkError, LookupError, TopologyError) as error:
        module.fail_json(msg=str(error))
    module.exit_json(
        changed=bool(wired["changed"]), ports=wired["changed"], missing=wired["missing"]
    )


if __name__ == "__main__":
    main()
