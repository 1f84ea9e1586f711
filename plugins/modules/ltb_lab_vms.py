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

from ansible.module_utils.ltb_lab_vms import MODULE_SPEC, outcome
from ansible.module_utils.ltb_module import run


def main():
    run(MODULE_SPEC, outcome)


if __name__ == "__main__":
    main()
