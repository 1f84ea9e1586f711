#!/usr/bin/python
# LTB module: named snapshots of a running lab on its hypervisor.
from __future__ import annotations

DOCUMENTATION = r"""
module: ltb_snapshot
short_description: Take, list, delete or plan the restore of named snapshots of a lab
description:
  - Runs on the hypervisor with the Python that has the ltb package (the platform's venv);
    the work is done by C(ltb.snapshot), which documents what a snapshot holds.
  - O(action=create) snapshots every node of the running lab O(lab) as O(name). A failed or
    cancelled (SIGTERM) snapshot leaves nothing behind and every node running; what a run
    killed outright left (a dead owner's hidden directory and partial images) is cleaned by
    the next O(action=create), O(action=delete) or O(action=cleanup) of the lab.
    O(action=delete) removes a snapshot and its images.
    O(action=list) returns the lab's snapshots. O(action=plan) checks that snapshot O(name)
    of lab O(lab) is complete and returns what a restore deploys for each node.
    O(action=runtime) gives the nodes of a lab just deployed from snapshot O(name) the runtime
    state it kept (routes set by hand; see C(ltb.runtime)). O(action=cleanup) only cleans
    the leftovers of dead snapshot runs of the lab (remove runs it).
options:
  lab:
    description: Lab name.
    type: str
    required: true
  name:
    description: Snapshot name (not needed with O(action=list)).
    type: str
  action:
    description: What to do.
    type: str
    choices: [create, delete, list, plan, runtime, cleanup]
    default: create
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
"""

RETURN = r"""
snapshot:
  description: The manifest of the snapshot taken (action=create).
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
cleaned:
  description: What was cleaned of dead snapshot runs (action=delete or cleanup).
  type: list
  elements: str
  returned: when action=delete or action=cleanup
"""

from pathlib import Path

from ansible.module_utils.basic import AnsibleModule

try:
    from ltb import snapshot as snapshots
except ImportError as import_error:  # pragma: no cover - shown to the operator
    LTB_IMPORT_ERROR = import_error
else:
    LTB_IMPORT_ERROR = None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            lab=dict(type="str", required=True),
            name=dict(type="str"),
            action=dict(
                type="str",
                choices=["create", "delete", "list", "plan", "runtime", "cleanup"],
                default="create",
            ),
            state_dir=dict(type="path", default="/var/lib/ltb"),
            ssh_key=dict(type="path", default="/var/lib/ltb/ssh/id_ed25519", no_log=False),
            libvirt_uri=dict(type="str", default="qemu:///system"),
            min_free_bytes=dict(type="int", default=512 * 1024**2),
            vm_memory=dict(type="bool", default=True),
        ),
        required_if=[
            ("action", action, ["name"]) for action in ("create", "delete", "plan", "runtime")
        ],
        supports_check_mode=False,
    )
    if LTB_IMPORT_ERROR is not None:
        module.fail_json(msg=f"the ltb package is not importable ({LTB_IMPORT_ERROR}); run make up")
    p = module.params
    where = snapshots.Snapshots(
        state_dir=Path(p["state_dir"]),
        ssh_key=Path(p["ssh_key"]),
        libvirt_uri=p["libvirt_uri"],
        min_free_bytes=p["min_free_bytes"],
        vm_memory=p["vm_memory"],
    )
    try:
        if p["action"] == "create":
            manifest = snapshots.take_snapshot(p["lab"], p["name"], where)
            module.exit_json(changed=True, snapshot=manifest)
        if p["action"] in ("delete", "cleanup"):
            cleaned = snapshots.clean_leftovers(p["lab"], where)
            deleted = p["action"] == "delete" and snapshots.delete_snapshot(
                p["lab"], p["name"], where
            )
            module.exit_json(changed=bool(deleted or cleaned), cleaned=cleaned)
        if p["action"] == "list":
            module.exit_json(changed=False, snapshots=snapshots.list_snapshots(p["lab"], where))
        if p["action"] == "runtime":
            routes = snapshots.restore_runtime(p["lab"], p["name"], where)
            module.exit_json(changed=any(routes.values()), routes=routes)
        module.exit_json(changed=False, plan=snapshots.restore_plan(p["lab"], p["name"], where))
    except snapshots.SnapshotError as error:
        module.fail_json(msg=str(error))


if __name__ == "__main__":
    main()
