#!/usr/bin/python
# LTB module: everything of the given labs on a hypervisor removed, in one module run.
from __future__ import annotations

DOCUMENTATION = r"""
module: ltb_lab_remove
short_description: Removes everything of the given labs on the hypervisor, found by their identity
description:
  - Runs on the hypervisor with its own python3 (standard library and module_utils only; the
    Docker Engine API over its socket, C(virsh), C(ovs-vsctl), C(ip)). One module run for all
    the labs of the hypervisor, instead of one per lab and piece (each costs a Python start-up).
  - For each lab, in this order, also what a deploy that failed halfway or a changed topology
    left; a lab that is not there changes nothing.
  - First, for each lab, the owner check of its bridge - a lab whose bridge belongs to another
    lab is left as it is (and the run fails, naming both).
  - Every container labelled C(ltb.lab=<lab>) and the lab's untagged images (several at a time).
  - Every libvirt domain whose name starts with a lab's node prefix (one C(virsh list) for all
    the labs).
  - After the domains, the leftovers of the lab's snapshot runs that died (a VM such a run had
    saved is not brought back for nothing).
  - The lab's bridge with all its ports, deleted at the same time as its containers and
    domains (Open vSwitch and Docker work side by side).
  - Last, every hypervisor interface of the lab by its alias and the unlabelled ones named like
    its host ends or tunnel device, and its state directory C(<state_dir>/labs/<lab>).
  - A lab whose piece fails keeps its later pieces (its state directory stays, so a later
    remove finds it); the other labs go on; the run fails naming what failed.
  - The lab's allocation (tag, management subnet) is the controller's, released by
    M(ltb_lab_allocation) after this.
  - Check mode reports what would be removed, with a diff.
options:
  labs:
    description: The labs, each as in C(ltb_labs_here) (lab, node_prefix, bridge, tag).
    type: list
    elements: dict
    required: true
  snapshot_nodes:
    description:
      - The C(ltb_node.snapshot) of the labs' nodes on this hypervisor (each lab's by its
        node prefix), for the clean-up of a dead snapshot run that did not write its nodes down.
    type: list
    elements: dict
    default: []
  state_dir:
    description: LTB's state directory on the hypervisor.
    type: path
    default: /var/lib/ltb
  libvirt_uri:
    description: The libvirt connection.
    type: str
    default: qemu:///system
  parallel:
    description: How many containers are removed at the same time.
    type: int
    default: 8
  state:
    description: Only V(absent).
    type: str
    choices: [absent]
    default: absent
"""

RETURN = r"""
actions:
  description: What was removed (in check mode, what would be), all labs.
  type: list
  elements: str
  returned: always
labs:
  description: Per lab, C(changed) and the action lines of its C(containers), C(domains),
    C(snapshots) and C(network).
  type: dict
  returned: always
"""

from ansible.module_utils.ltb_lab_remove import MODULE_SPEC, outcome
from ansible.module_utils.ltb_module import run


def main():
    run(MODULE_SPEC, outcome)


if __name__ == "__main__":
    main()
