#!/usr/bin/python
# LTB module: named snapshots of a running lab on its hypervisor.
from __future__ import annotations

DOCUMENTATION = r"""
module: ltb_snapshot
short_description: Take, list, delete or plan the restore of named snapshots of a lab
description:
  - Runs on the hypervisor with its own python3 (standard library only; Docker through its
    socket, libvirt through virsh); the work is done by the module_utils C(ltb_snapshot),
    which documents what a snapshot holds. The lab's nodes come as data from the controller
    (O(nodes), each node's C(ltb_node.snapshot) from the inventory); a node's kind picks what
    is done with it.
  - O(action=create) snapshots every node of the running lab O(lab) as O(name). A failed or
    cancelled (SIGTERM) snapshot leaves nothing behind and every node running; what a run
    killed outright left (a dead owner's hidden directory and partial images) is cleaned by
    the next O(action=create), O(action=delete) or O(action=cleanup) of the lab.
    O(action=delete) removes a snapshot and its images.
    O(action=list) returns the lab's snapshots. O(action=plan) checks that snapshot O(name)
    of lab O(lab) is complete and returns what a restore deploys for each node.
    O(action=runtime) gives the nodes of a lab just deployed from snapshot O(name) the runtime
    state it kept (routes set by hand), and warns about nodes whose state was only in the
    memory they could not resume. O(action=restore) is a restore in place, the lab's whole
    part on this hypervisor in one run. It checks what O(action=plan) checks and that
    O(topology_sha256) is the snapshot's topology; a lab that does not run from that topology
    (or a VM the snapshot kept no definition of) is left alone (C(in_place=false)). Otherwise
    it removes every container and domain of the lab (O(node_prefix)), keeps its network, and
    then, several nodes at a time, makes each of O(containers) again from its committed image
    with its ports and addresses (the code of ltb_lab_containers), and restores each VM among
    O(nodes) (its disk copied back, its domain defined from the definition the snapshot kept,
    C(virsh restore) of its memory until its SSH banner answers; a VM saved without memory,
    or whose memory cannot be resumed, boots from the snapshot's disk with a warning, and is
    waited for until ready). Then it wires the lab's O(ports), waits for the containers, and
    replays the runtime state (O(action=runtime)).
    O(action=cleanup) only cleans the leftovers of dead snapshot runs of the lab (remove runs
    it).
  - Check mode reports what create, delete, cleanup, runtime and restore would change and
    changes nothing.
options:
  lab:
    description: Lab name.
    type: str
    required: true
  name:
    description: Snapshot name (not needed with O(action=list) or O(action=cleanup)).
    type: str
  action:
    description: What to do.
    type: str
    choices: [create, delete, list, plan, runtime, restore, cleanup]
    default: create
  nodes:
    description:
      - The lab's nodes (needed by O(action=create), O(action=runtime) and O(action=restore)),
        each with C(name),
        C(kind) and what its kind needs (C(container); C(domain), C(disk) relative to
        O(state_dir), C(memory_bytes), C(address)).
    type: list
    elements: dict
    default: []
  state_dir:
    description: LTB's state directory on the hypervisor.
    type: path
    default: /var/lib/ltb
  ssh_key:
    description: The platform's private SSH key (VM nodes flush their disks over SSH).
    type: path
    default: /var/lib/ltb/ssh/id_ed25519
  libvirt_uri:
    description: libvirt connection of the VM nodes.
    type: str
    default: qemu:///system
  min_free_bytes:
    description: Free space a new snapshot must leave on the state directory's file system.
    type: int
    default: 536870912
  vm_memory:
    description: Save each VM's memory with its disk (as C(virsh save) does); it resumes.
    type: bool
    default: true
  resumed:
    description:
      - With O(action=runtime), the nodes that resumed from the memory saved with the snapshot.
        Their memory holds their runtime state, so nothing is replayed in them.
    type: list
    elements: str
    default: []
  parallel:
    description: How many nodes are saved (or VMs restored) at the same time.
    type: int
    default: 4
  ready_timeout:
    description: Seconds O(action=restore) waits for each VM to answer (or, booted, be ready).
    type: int
    default: 300
  node_prefix:
    description:
      - With O(action=restore), the lab's node name prefix (C(ltb_labs_here[].node_prefix));
        every domain whose name starts with it is removed first.
    type: str
  topology_sha256:
    description:
      - With O(action=restore), the SHA-256 of the topology file given to the controller; it
        must be the snapshot's.
    type: str
  topology_file:
    description: With O(action=restore), that file's path, for messages.
    type: str
    default: the topology given
  containers:
    description:
      - With O(action=restore), the lab's container nodes here, each its inventory
        C(ltb_node), as ltb_lab_containers takes them.
    type: list
    elements: dict
    default: []
  container_settings:
    description:
      - With O(action=restore), ltb_lab_containers' settings of the containers
        (C(capabilities), C(sysctls), C(default_image), C(ready_timeout), C(hypervisor)).
    type: dict
    default: {}
  bridge:
    description: With O(action=restore), the lab's bridge.
    type: str
  ports:
    description:
      - With O(action=restore), the lab's ports (the lab network's C(ports)), wired once the
        nodes run again.
    type: list
    elements: dict
    default: []
"""

RETURN = r"""
snapshot:
  description: The manifest of the snapshot taken (action=create; in check mode, the nodes).
  type: dict
  returned: when action=create
snapshots:
  description: Manifests of the lab's snapshots, oldest first (action=list).
  type: list
  returned: when action=list
plan:
  description: The snapshot's topology file and, per node, its image or disk (action=plan).
  type: dict
  returned: when action=plan
routes:
  description: Routes replayed per node (action=runtime).
  type: dict
  returned: when action=runtime
not_replayed:
  description: Warnings on nodes whose state was only in the memory they did not resume from.
  type: list
  elements: str
  returned: when action=runtime
in_place:
  description: Whether the lab was (in check mode, would be) restored in place (action=restore).
  type: bool
  returned: when action=restore
why:
  description: Why the lab is not restored in place (action=restore, in_place false).
  type: str
  returned: when action=restore
actions:
  description: What the restore in place changed (in check mode, would), one line each.
  type: list
  elements: str
  returned: when action=restore
vms:
  description:
    - Per VM restored in place its C(state), V(resumed), V(started) (saved without memory) or
      V(booted) (its memory could not be resumed, then C(why)), and C(seconds) per step.
  type: dict
  returned: when action=restore
seconds:
  description: Seconds of each step of the restore in place.
  type: dict
  returned: when action=restore
deployed:
  description: Whether the lab is deployed on this hypervisor (its kept topology is there).
  type: bool
  returned: always
cleaned:
  description: What was cleaned of dead snapshot runs (in check mode, what would be).
  type: list
  elements: str
  returned: when action=delete or action=cleanup
"""

from ansible.module_utils.ltb_module import run
from ansible.module_utils.ltb_snapshot_module import MODULE_SPEC, outcome


def main():
    run(MODULE_SPEC, outcome)


if __name__ == "__main__":
    main()
