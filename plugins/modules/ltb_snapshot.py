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
    memory they could not resume. O(action=resume) removes every domain of the lab
    (O(node_prefix)), then restores in place the VMs among O(nodes) that snapshot O(name)
    saved with their memory, several at a time (the lab's network and VM directories stay),
    each with its disk copied back, its domain defined from the definition the snapshot kept
    (C(<node>.xml); for older snapshots the memory file's XML), C(virsh restore), until its SSH
    banner answers; one whose memory cannot be resumed boots from the snapshot's disk and is
    waited for until ready.
    O(action=cleanup) only cleans the leftovers of dead snapshot runs of the lab (remove runs
    it).
  - Check mode reports what create, delete, cleanup, runtime and resume would change and
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
    choices: [create, delete, list, plan, runtime, resume, cleanup]
    default: create
  nodes:
    description:
      - The lab's nodes (needed by O(action=create), O(action=runtime) and O(action=resume)),
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
    description: Save each VM's memory with its disk (C(virsh save)); a restored VM resumes.
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
    description: How many nodes are saved (or VMs resumed) at the same time.
    type: int
    default: 4
  ready_timeout:
    description: Seconds O(action=resume) waits for each VM to answer (or, booted, be ready).
    type: int
    default: 300
  node_prefix:
    description:
      - With O(action=resume), the lab's node name prefix (C(ltb_labs_here[].node_prefix));
        every domain whose name starts with it is removed first.
    type: str
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
vms:
  description:
    - Per VM restored (action=resume) its C(state), V(resumed) or V(booted) (then C(why)), and
      C(seconds) per step (C(disk), C(restore), C(ssh)).
  type: dict
  returned: when action=resume
removed:
  description: The lab's domains removed first (action=resume; in check mode, would be).
  type: list
  elements: str
  returned: when action=resume
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

from ansible.module_utils import ltb_snapshot as snapshots
from ansible.module_utils import ltb_snapshot_resume as resume
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.ltb_snapshot_docker import DockerError


def main():
    module = AnsibleModule(
        argument_spec=dict(
            lab=dict(type="str", required=True),
            name=dict(type="str"),
            action=dict(
                type="str",
                choices=["create", "delete", "list", "plan", "runtime", "resume", "cleanup"],
                default="create",
            ),
            nodes=dict(type="list", elements="dict", default=[]),
            state_dir=dict(type="path", default="/var/lib/ltb"),
            ssh_key=dict(type="path", default="/var/lib/ltb/ssh/id_ed25519", no_log=False),
            libvirt_uri=dict(type="str", default="qemu:///system"),
            min_free_bytes=dict(type="int", default=512 * 1024**2),
            vm_memory=dict(type="bool", default=True),
            parallel=dict(type="int", default=4),
            resumed=dict(type="list", elements="str", default=[]),
            ready_timeout=dict(type="int", default=300),
            node_prefix=dict(type="str"),
        ),
        required_if=[
            ("action", action, ["name"])
            for action in ("create", "delete", "plan", "runtime", "resume")
        ]
        + [("action", action, ["nodes"]) for action in ("create", "runtime", "resume")]
        + [("action", "resume", ["node_prefix"])],
        supports_check_mode=True,
    )
    p = module.params
    lab, name, nodes, check = p["lab"], p["name"], p["nodes"], module.check_mode
    where = snapshots.Settings(
        state_dir=p["state_dir"],
        ssh_key=p["ssh_key"],
        libvirt_uri=p["libvirt_uri"],
        min_free_bytes=p["min_free_bytes"],
        vm_memory=p["vm_memory"],
        parallel=p["parallel"],
    )
    deployed = snapshots.deployed_topology(lab, where).is_file()

    def exit_json(**result):
        module.exit_json(deployed=deployed, **result)

    try:
        if p["action"] == "create":
            if check:
                plan = snapshots.would_take(lab, name, nodes, where)
                exit_json(changed=True, snapshot=plan)
            manifest = snapshots.take_snapshot(lab, name, nodes, where)
            exit_json(changed=True, snapshot=manifest)
        if p["action"] in ("delete", "cleanup"):
            if check:
                cleaned = snapshots.find_leftovers(lab, where)
            else:
                cleaned = snapshots.clean_leftovers(lab, nodes, where)
            deleted = p["action"] == "delete" and snapshots.delete_snapshot(
                lab, name, where, check_mode=check
            )
            exit_json(changed=bool(deleted or cleaned), cleaned=cleaned)
        if p["action"] == "list":
            exit_json(changed=False, snapshots=snapshots.list_snapshots(lab, where))
        if p["action"] == "runtime":
            routes, warnings = snapshots.restore_runtime(
                lab, name, nodes, where, check_mode=check, resumed=p["resumed"]
            )
            for warning in warnings:
                module.warn(warning)
            exit_json(changed=any(routes.values()), routes=routes, not_replayed=warnings)
        if p["action"] == "resume":
            removed, vms = resume.resume_vms(
                lab,
                name,
                nodes,
                where,
                p["node_prefix"],
                timeout=p["ready_timeout"],
                check_mode=check,
            )
            for node, done in vms.items():
                if done["state"] == "booted":
                    module.warn(
                        f"node {node}: the memory saved in snapshot {name!r} could not be "
                        f"restored ({done['why']}); it booted from the snapshot's disk instead"
                    )
            exit_json(changed=bool(removed or vms), removed=removed, vms=vms)
        plan = snapshots.restore_plan(lab, name, where, check_mode=check)
        exit_json(changed=False, plan=plan)
    except (snapshots.SnapshotError, DockerError) as error:
        module.fail_json(msg=str(error))


if __name__ == "__main__":
    main()
