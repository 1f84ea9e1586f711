#!/usr/bin/python
# LTB module: all container nodes of a lab, in one module run on the hypervisor.
from __future__ import annotations

DOCUMENTATION = r"""
module: ltb_lab_containers
short_description: The container nodes of a lab, created, wired, ready or removed at once
description:
  - Runs on the hypervisor with its own python3 (the Docker Engine API over its socket, C(ip)
    and C(nsenter); plugins/module_utils/ltb_docker.py, ltb_container_files.py, ltb_veth.py).
    One module run for the whole lab, several nodes at a time, instead of module runs per node.
  - O(state=preflight) checks that the image of every node is on the hypervisor, and changes
    nothing.
  - O(state=present) takes the wanted state of every container node of the lab (computed on
    the controller from the inventory), compares it with the lab's containers (found by the
    label C(ltb.lab)), their startup files and their veths, and does only the difference. A
    container that is missing or whose settings differ is (re)created and started, a stopped
    one started, files that differ written (one archive), missing interfaces and addresses
    made. Then, unless O(wait=false), it waits until every node of an LTB image (one labelled
    C(ltb.image.definition)) has written C(/run/ltb-node-ready).
  - With O(ports), O(state=present) wires the lab's ports before it waits (what
    ltb_lab_links does), so a lab whose nodes here are all containers deploys in this one run.
  - O(state=ready) only waits, like the end of O(state=present).
  - O(state=absent) removes every container labelled with the lab (also those no topology
    names any more), and the lab's untagged snapshot images.
  - Converges; check mode reports what would change (with O(nodes) differences in the diff).
options:
  lab:
    description: Lab name (the containers' C(ltb.lab) label).
    type: str
    required: true
  state:
    description: What to do (see above).
    type: str
    choices: [preflight, present, ready, absent]
    default: present
  nodes:
    description:
      - The lab's container nodes, each its inventory C(ltb_node) (name, container_name, image,
        cpus, memory_bytes, interfaces with name/host_name/addresses, files).
    type: list
    elements: dict
    default: []
  images:
    description: Image per node name, instead of the node's own (a restore's snapshot images).
    type: dict
    default: {}
  default_image:
    description: Image of a node that names none.
    type: str
    default: ltb/node:latest
  copy_files:
    description: Whether startup files are put into the nodes (a restore keeps the snapshot's).
    type: bool
    default: true
  authorized_keys:
    description:
      - Lines of C(/root/.ssh/authorized_keys) (mode 0600) in every node whose files do not
        give that path; none, no file.
    type: list
    elements: str
    default: []
  capabilities:
    description: Linux capabilities added to every node.
    type: list
    elements: str
    default: []
  sysctls:
    description: Kernel settings of every node's network namespace.
    type: dict
    default: {}
  ready_timeout:
    description: Seconds to wait for the nodes to be ready (given to them as C(LTB_WAIT_SECONDS)).
    type: int
    default: 120
  wait:
    description: With O(state=present), whether to wait for the nodes to be ready.
    type: bool
    default: true
  hypervisor:
    description: The hypervisor's inventory name, for messages.
    type: str
    default: this hypervisor
  bridge:
    description: The lab's bridge (with O(ports)).
    type: str
  ports:
    description:
      - With O(state=present), the lab's ports to wire once the interfaces are made (the
        lab network's C(ports), as ltb_lab_links takes them); none, no wiring.
    type: list
    elements: dict
  parallel:
    description: How many nodes are handled at the same time.
    type: int
    default: 8
"""

RETURN = r"""
actions:
  description: What changed (in check mode, what would), one line per change, by node.
  type: list
  elements: str
  returned: always
removed:
  description: With O(state=absent), names of the containers removed.
  type: list
  elements: str
  returned: when state is absent
"""

from ansible.module_utils.ltb_lab_containers import MODULE_SPEC, outcome
from ansible.module_utils.ltb_module import run


def main():
    run(MODULE_SPEC, outcome)


if __name__ == "__main__":
    main()
