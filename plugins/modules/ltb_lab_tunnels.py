#!/usr/bin/python
# LTB module: the VXLAN tunnel of a lab spread over several hypervisors.
from __future__ import annotations

DOCUMENTATION = r"""
module: ltb_lab_tunnels
short_description: A spread lab's bridge reaches its other hypervisors through a VXLAN tunnel
description:
  - With O(state=present), makes the kernel VXLAN device O(tunnel.device) (VNI
    O(tunnel.vni), local address O(tunnel.local), UDP port O(tunnel.port), MTU O(tunnel.mtu),
    alias C(ltb:<lab>:tunnel)) exist and up, flooding to every address of O(tunnel.remotes)
    and to no other, cut off from the hypervisor's own IP stack, and a port of the lab bridge
    O(bridge) that trunks exactly the VLANs O(tunnel.vlans) (external_ids C(ltb-lab),
    C(ltb-role=tunnel)). A device whose VXLAN settings differ is made again.
  - With O(state=absent), deletes the device (unless another lab's alias is on it) and its
    port. Remove's interface sweep (M(ltb_lab_remove)) deletes it by its alias too.
  - Converges; check mode is supported (with a diff). Standard library only on the
    hypervisor (plugins/module_utils/ltb_tunnels.py).
options:
  lab:
    description: Lab name.
    type: str
    required: true
  bridge:
    description: The lab bridge (required with O(state=present)).
    type: str
  tunnel:
    description: The tunnel, as C(ltb.inventory.tunnel_vars) renders it.
    type: dict
    required: true
    suboptions:
      device: {description: Device name (15 characters at most)., type: str, required: true}
      vni: {description: VXLAN network identifier (the lab's tag)., type: int}
      port: {description: UDP port., type: int, default: 4789}
      mtu: {description: MTU of the device., type: int, default: 1500}
      local: {description: This hypervisor's underlay address., type: str}
      remotes:
        description: Underlay addresses of the lab's other hypervisors.
        type: list
        elements: str
        default: []
      vlans:
        description: Link VLANs that cross hypervisors.
        type: list
        elements: int
        default: []
  state:
    description: Whether the tunnel exists.
    type: str
    choices: [present, absent]
    default: present
"""

RETURN = r"""
actions:
  description: What was done (or, in check mode, would be done).
  type: list
  elements: str
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.ltb_ovs import OvsError
from ansible.module_utils.ltb_tunnels import ensure_absent, ensure_present
from ansible.module_utils.ltb_veth import VethError


def main():
    module = AnsibleModule(
        argument_spec=dict(
            lab=dict(type="str", required=True),
            bridge=dict(type="str"),
            tunnel=dict(
                type="dict",
                required=True,
                options=dict(
                    device=dict(type="str", required=True),
                    vni=dict(type="int"),
                    port=dict(type="int", default=4789),
                    mtu=dict(type="int", default=1500),
                    local=dict(type="str"),
                    remotes=dict(type="list", elements="str", default=[]),
                    vlans=dict(type="list", elements="int", default=[]),
                ),
            ),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        required_if=[("state", "present", ["bridge"])],
        supports_check_mode=True,
    )
    params, tunnel = module.params, module.params["tunnel"]
    where = f"lab {params['lab']}, tunnel {tunnel['device']}"
    try:
        if params["state"] == "absent":
            actions, before = ensure_absent(params["lab"], tunnel["device"], module.check_mode)
            after = None
        else:
            missing = [k for k in ("vni", "local") if tunnel[k] is None]
            if missing:
                module.fail_json(msg=f"{where}: state present needs {', '.join(missing)}")
            want = {"lab": params["lab"], "bridge": params["bridge"], **tunnel}
            actions, before, after = ensure_present(want, module.check_mode)
    except (OvsError, VethError) as error:
        module.fail_json(msg=f"{where}: {error}")
    module.exit_json(
        changed=bool(actions),
        actions=actions,
        diff={"before": before or {}, "after": after or {}},
    )


if __name__ == "__main__":
    main()
