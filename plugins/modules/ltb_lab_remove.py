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
  - Last, the lab's network - its bridge with all its ports, every hypervisor interface of the
    lab by its alias and the unlabelled ones named like its host ends or tunnel device - and its
    state directory C(<state_dir>/labs/<lab>).
  - A lab whose piece fails keeps its later pieces (the network stays while a container of the
    lab may still use it); the other labs go on; the run fails naming what failed.
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

from ansible.module_utils import ltb_snapshot as snapshots
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.ltb_docker import Docker, DockerError
from ansible.module_utils.ltb_lab_absent import (
    LAB_NAME,
    RemoveError,
    container_actions,
    containers_absent,
    domains_absent,
    lab_bridge,
    network_absent,
)
from ansible.module_utils.ltb_ovs import OvsError
from ansible.module_utils.ltb_veth import VethError

PIECES = ("containers", "domains", "snapshots", "network")
FAILURES = (RemoveError, DockerError, OvsError, VethError, OSError, snapshots.SnapshotError)


def check_labs(labs):
    """The labs' entries as the playbook gives them; a message naming what is wrong, or None."""
    for index, lab in enumerate(labs):
        missing = [key for key in ("lab", "node_prefix", "bridge", "tag") if not lab.get(key)]
        if missing:
            return f"labs[{index}] lacks {', '.join(missing)}: nothing removed"
        if not LAB_NAME.fullmatch(str(lab["lab"])):
            return f"labs[{index}]: {lab['lab']!r} is not a lab name: nothing removed"
        if not str(lab["node_prefix"]).startswith(f"ltb-{lab['lab']}."):
            return f"lab {lab['lab']}: node prefix {lab['node_prefix']!r} is not the lab's"
    return None


def remove(params, check_mode):
    """Removes the labs; returns (per lab its actions by piece, errors)."""
    labs = params["labs"]
    done = {lab["lab"]: {piece: [] for piece in PIECES} for lab in labs}
    errors = []
    failed = set()

    def step(lab, piece, work):
        if lab in failed:
            return
        try:
            done[lab][piece] += work()
        except FAILURES as error:
            errors.append(f"lab {lab}: {piece} not removed: {error}")
            failed.add(lab)

    # The owner check of every lab's bridge, before anything of the lab is removed.
    bridges = {}
    for lab in labs:

        def owner_check(lab=lab):
            bridges[lab["lab"]] = lab_bridge(lab["lab"], lab["bridge"])
            return []

        step(lab["lab"], "network", owner_check)

    docker = Docker()
    for lab in labs:

        def containers(lab=lab):
            found, images, failures = containers_absent(
                docker, lab["lab"], params["parallel"], check_mode
            )
            if failures:
                raise RemoveError("; ".join(failures))
            return container_actions(found, images)

        step(lab["lab"], "containers", containers)

    # One read of libvirt's domains for all the labs still going.
    going = [lab for lab in labs if lab["lab"] not in failed]
    try:
        removed = domains_absent(
            [lab["node_prefix"] for lab in going], params["libvirt_uri"], check_mode
        )
    except FAILURES as error:
        errors.append(f"domains of {', '.join(lab['lab'] for lab in going)} not removed: {error}")
        failed.update(lab["lab"] for lab in going)
        removed = []
    for line in removed:
        for lab in going:
            if line.startswith(f"remove domain {lab['node_prefix']}"):
                done[lab["lab"]]["domains"].append(line)

    where = snapshots.Settings(
        state_dir=params["state_dir"],
        ssh_key=f"{params['state_dir']}/ssh/id_ed25519",
        libvirt_uri=params["libvirt_uri"],
    )
    for lab in labs:
        name = lab["lab"]
        if check_mode:
            step(name, "snapshots", lambda name=name: snapshots.find_leftovers(name, where))
        else:
            prefix = lab["node_prefix"]
            nodes = [
                node
                for node in params["snapshot_nodes"]
                if str(node.get("container") or node.get("domain") or "").startswith(prefix)
            ]
            step(name, "snapshots", lambda n=name, s=nodes: snapshots.clean_leftovers(n, s, where))
        step(
            name,
            "network",
            lambda lab=lab: network_absent(
                lab["lab"],
                lab["bridge"],
                bridges[lab["lab"]],
                lab["tag"],
                params["state_dir"],
                check_mode,
            ),
        )
    return done, errors


def main():
    module = AnsibleModule(
        argument_spec=dict(
            labs=dict(type="list", elements="dict", required=True),
            snapshot_nodes=dict(type="list", elements="dict", default=[]),
            state_dir=dict(type="path", default="/var/lib/ltb"),
            libvirt_uri=dict(type="str", default="qemu:///system"),
            parallel=dict(type="int", default=8),
            state=dict(type="str", choices=["absent"], default="absent"),
        ),
        supports_check_mode=True,
    )
    problem = check_labs(module.params["labs"])
    if problem:
        module.fail_json(msg=problem)
    done, errors = remove(module.params, module.check_mode)
    actions = [line for pieces in done.values() for piece in PIECES for line in pieces[piece]]
    result = dict(
        changed=bool(actions),
        actions=actions,
        labs={lab: {"changed": any(pieces.values()), **pieces} for lab, pieces in done.items()},
        diff={"before": "".join(line + "\n" for line in actions), "after": ""},
    )
    if errors:
        module.fail_json(msg="; ".join(errors), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
