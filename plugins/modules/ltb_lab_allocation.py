#!/usr/bin/python
# LTB module: a lab's allocation (tag and management subnet), held on its hypervisor and
# released on the controller.
from __future__ import annotations

DOCUMENTATION = r"""
module: ltb_lab_allocation
short_description: A lab's tag and management subnet, checked and kept, or released
description:
  - With O(state=present) it runs on the hypervisor with any Python 3 (standard library and
    module_utils only). O(state=absent) runs on the controller, whose Python has the ltb
    package (the registry is C(ltb.allocation.Registry)).
  - With O(state=present), on the hypervisor, before the lab's network is made, fails
    and changes nothing when the management subnet is in use on the hypervisor by anything
    but the lab's own management port (a route of any table that overlaps it, an address of
    the hypervisor in it, a default route whose gateway is in it). Then it keeps the
    allocation in C(<state_dir>/labs/<lab>/allocation.json), beside the topology deploy
    keeps, where C(ltb.deployed) reads it.
  - With O(state=absent), on the controller (delegate to it), after the lab is gone, the
    lab's entry of the allocation registry O(registry) is removed, so another lab can take
    its tag and subnet.
options:
  lab:
    description: Lab name.
    type: str
    required: true
  state:
    description: Whether the lab holds its allocation.
    type: str
    choices: [present, absent]
    default: present
  tag:
    description: The lab's allocated tag (required with O(state=present)).
    type: str
  mgmt_subnet:
    description: The lab's management subnet (required with O(state=present)).
    type: str
  mgmt_port:
    description: The lab's management port, whose own routes and address are the lab's.
    type: str
  state_dir:
    description: LTB's state directory on the hypervisor.
    type: path
    default: /var/lib/ltb
  registry:
    description:
      - The controller's allocation registry file, for O(state=absent); empty for a run of a
        job, whose allocation the lab store holds (nothing is released here).
    type: path
"""

RETURN = r"""
conflicts:
  description: What uses the management subnet on the hypervisor (O(state=present)).
  type: list
  elements: str
  returned: always
"""

import json
from ipaddress import IPv4Network
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.ltb_routes import ip_json, subnet_conflicts

# Beside the kept topology on the hypervisor (ltb.deployed reads it; ltb.allocation.DEPLOYED_FILE).
DEPLOYED_FILE = "allocation.json"


def hold(module, params):
    subnet = IPv4Network(params["mgmt_subnet"])
    conflicts = subnet_conflicts(
        subnet,
        params["mgmt_port"] or "",
        ip_json("route", "show", "table", "all"),
        ip_json("addr", "show"),
    )
    if conflicts:
        module.fail_json(
            msg=(
                f"the management subnet {subnet} of lab {params['lab']!r} is in use on this "
                f"hypervisor: {'; '.join(conflicts)}. Set another mgmt.ipv4_subnet in the "
                "topology (or remove what uses it)."
            ),
            conflicts=conflicts,
        )
    wanted = {"lab": params["lab"], "tag": params["tag"], "mgmt_subnet": str(subnet)}
    path = Path(params["state_dir"]) / "labs" / params["lab"] / DEPLOYED_FILE
    try:
        kept = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        kept = None
    if kept == wanted:
        module.exit_json(changed=False, conflicts=[])
    if not module.check_mode:
        path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        temporary = path.with_name(f".{DEPLOYED_FILE}.tmp")
        temporary.write_text(json.dumps(wanted, indent=1) + "\n", encoding="utf-8")
        temporary.replace(path)
    module.exit_json(changed=True, conflicts=[])


def release(module, params):
    # On the controller only (delegated to it): the registry and its lock are ltb's.
    from ltb.allocation import REGISTRY_FILE, Registry

    if not params["registry"]:
        # A run of a job: the lab store holds the lab's allocation and releases it.
        module.exit_json(changed=False, conflicts=[])
    registry_file = Path(params["registry"])
    if registry_file.name != REGISTRY_FILE:
        module.fail_json(msg=f"registry must be a file named {REGISTRY_FILE}, not {registry_file}")
    registry = Registry(registry_file.parent)
    if module.check_mode:
        module.exit_json(changed=params["lab"] in registry.held(), conflicts=[])
    module.exit_json(changed=registry.release(params["lab"]), conflicts=[])


def main():
    module = AnsibleModule(
        argument_spec=dict(
            lab=dict(type="str", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            tag=dict(type="str"),
            mgmt_subnet=dict(type="str"),
            mgmt_port=dict(type="str"),
            state_dir=dict(type="path", default="/var/lib/ltb"),
            registry=dict(type="path"),
        ),
        required_if=[
            ("state", "present", ("tag", "mgmt_subnet", "mgmt_port")),
        ],
        supports_check_mode=True,
    )
    try:
        if module.params["state"] == "present":
            hold(module, module.params)
        else:
            release(module, module.params)
    except (RuntimeError, ValueError, OSError, ImportError) as error:
        module.fail_json(msg=str(error))


if __name__ == "__main__":
    main()
