#!/usr/bin/python
# LTB module: all VM nodes of a lab on one hypervisor, in one module run.
from __future__ import annotations

DOCUMENTATION = r"""
module: ltb_lab_vms
short_description: The VM nodes of a lab on a hypervisor, checked or deployed at once
description:
  - Runs on the hypervisor with its own python3 (C(virsh), C(qemu-img);
    plugins/module_utils/ltb_lab_vms.py, ltb_config_drive.py). One module run for the lab's VMs
    there, several at a time, instead of module runs per node.
  - O(state=preflight) checks that the image of every node is on the hypervisor (a directory
    under O(image_root) with C(disk.qcow2)), that the acceleration is known (with
    O(accel=auto), the probe's C(vm-accel.json) in O(state_dir)) and that the files of a
    snapshot to deploy from are there, and changes nothing.
  - O(state=present) checks the same, then makes each VM as it must be, acting only where it
    differs. The node's directory; its disk, a copy-on-write overlay of the image's build
    directory (the target of the image's link), or a copy of the snapshot's disk (O(restore));
    its config drive (what ltb_config_drive writes); its domain, defined from XML rendered in
    the module (again only when that XML changed, by a hash kept in its metadata); started, or
    with O(restore) memory resumed by C(virsh restore), falling back to a boot from the disk
    with a warning.
  - It does not wait for the VMs; deploy.yml's per-node ready plays reach each node.
  - Converges; check mode reports what would change (the actions, also as the diff).
options:
  lab:
    description: Lab name.
    type: str
    required: true
  state:
    description: What to do (see above).
    type: str
    choices: [preflight, present]
    default: present
  nodes:
    description:
      - The lab's VM nodes on this hypervisor, each its inventory C(ltb_node) (name, image,
        cpus, memory_bytes, interfaces with name/host_name/vlan/addresses, files, and vm with
        domain, uuid, dir, disk, config_drive, console_log, interface_ids and macs).
    type: list
    elements: dict
    default: []
  state_dir:
    description: The platform's state directory; the nodes' vm paths are relative to it.
    type: path
    required: true
  image_root:
    description: Directory of the VM images, one directory per image name.
    type: path
    required: true
  default_image:
    description: Image of a node that names none.
    type: str
    required: true
  accel:
    description: Acceleration, or auto for what the hypervisor's probe found.
    type: str
    choices: [auto, kvm, qemu]
    default: auto
  libvirt_uri:
    description: The libvirt connection.
    type: str
    default: qemu:///system
  bridge:
    description: The lab's bridge, where interfaces with a VLAN are plugged.
    type: str
    default: ""
  default_cpus:
    description: vCPUs of a node that sets none (a fraction rounds up).
    type: float
    default: 1
  default_memory_bytes:
    description: Memory of a node that sets none.
    type: int
    default: 268435456
  kernel_cmdline:
    description: Kernel command line of images that boot a kernel directly (with vmlinuz).
    type: str
    default: console=ttyS0 rw panic=10
  authorized_keys:
    description: Lines of root's authorized_keys in every node whose files do not give it.
    type: list
    elements: str
    default: []
  restore:
    description:
      - Per node name, a snapshot to deploy the node from, with C(disk) (copied as its disk)
        and optionally C(memory) (resumed instead of a boot). Nodes not named boot anew.
    type: dict
    default: {}
  hypervisor:
    description: Inventory name of this hypervisor, for messages.
    type: str
    default: localhost
  parallel:
    description: VMs made at the same time.
    type: int
    default: 4
"""

RETURN = r"""
vms:
  description:
    - Per node name, its C(state) (running, started, resumed, booted), C(changed), the
      C(actions) taken (in check mode, that would be) and, for a booted one, C(why) it did
      not resume.
  type: dict
  returned: when state is present
resumed:
  description: Names of the nodes resumed from a snapshot's memory.
  type: list
  elements: str
  returned: always
actions:
  description: Every action taken (in check mode, that would be), one line each.
  type: list
  elements: str
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.ltb_lab_vms import Hypervisor, VmError, check, deploy


def main():
    module = AnsibleModule(
        argument_spec=dict(
            lab=dict(type="str", required=True),
            state=dict(type="str", choices=["preflight", "present"], default="present"),
            nodes=dict(type="list", elements="dict", default=[]),
            state_dir=dict(type="path", required=True),
            image_root=dict(type="path", required=True),
            default_image=dict(type="str", required=True),
            accel=dict(type="str", choices=["auto", "kvm", "qemu"], default="auto"),
            libvirt_uri=dict(type="str", default="qemu:///system"),
            bridge=dict(type="str", default=""),
            default_cpus=dict(type="float", default=1),
            default_memory_bytes=dict(type="int", default=256 * 1024 * 1024),
            kernel_cmdline=dict(type="str", default="console=ttyS0 rw panic=10"),
            authorized_keys=dict(type="list", elements="str", default=[], no_log=False),
            restore=dict(type="dict", default={}),
            hypervisor=dict(type="str", default="localhost"),
            parallel=dict(type="int", default=4),
        ),
        supports_check_mode=True,
    )
    p = module.params
    where = Hypervisor(
        p["hypervisor"],
        p["state_dir"],
        p["image_root"],
        p["default_image"],
        accel=p["accel"],
        libvirt_uri=p["libvirt_uri"],
        bridge=p["bridge"],
        default_cpus=p["default_cpus"],
        default_memory_bytes=p["default_memory_bytes"],
        kernel_cmdline=p["kernel_cmdline"],
        authorized_keys=p["authorized_keys"],
        parallel=p["parallel"],
    )
    if p["state"] == "preflight":
        _kind, errors = check(p["lab"], p["nodes"], where, p["restore"])
        if errors:
            module.fail_json(msg="; ".join(errors))
        module.exit_json(changed=False, resumed=[], actions=[])
    try:
        vms = deploy(p["lab"], p["nodes"], where, p["restore"], module.check_mode)
    except VmError as error:
        module.fail_json(msg=str(error))
    actions = [line for result in vms.values() for line in result["actions"]]
    for name, result in vms.items():
        if result["state"] == "booted":
            module.warn(
                f"node {name}: the memory saved in the snapshot could not be restored "
                f"({result['why']}); the node booted from its restored disk instead"
            )
    result = dict(
        changed=bool(actions),
        vms=vms,
        resumed=sorted(n for n, r in vms.items() if r["state"] == "resumed"),
        actions=actions,
    )
    if module._diff and actions:
        result["diff"] = dict(before="", after="".join(f"{line}\n" for line in actions))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
