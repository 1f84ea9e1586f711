# LTB module_utils: everything of the given labs on a hypervisor removed, found by their
# identity: the one implementation of ltb_lab_remove. The module runs it on a hypervisor
# reached over a connection; its action plugin runs it in the controller's own Python when the
# hypervisor is this machine (ansible_connection local), which saves the module's packaging and
# Python start-up, about a quarter of a small lab's remove.
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils import ltb_snapshot as snapshots
from ansible.module_utils.ltb_docker import Docker, DockerError
from ansible.module_utils.ltb_lab_absent import (
    LAB_NAME,
    RemoveError,
    bridge_absent,
    container_actions,
    containers_absent,
    domains_absent,
    lab_bridge,
    network_absent,
)
from ansible.module_utils.ltb_ovs import OvsError
from ansible.module_utils.ltb_veth import VethError
from ansible.module_utils.ltb_module import failure

# The module's arguments (module_utils/ltb_module.py).
MODULE_SPEC = dict(
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

    # Each lab's bridge is deleted at once, beside its containers and domains: Open vSwitch
    # takes as long to delete its ports as Docker to remove the containers (0.4 s each for 10
    # nodes), and one waits for the other for nothing. Its interfaces and state directory still
    # go last, so a lab whose container or domain fails stays findable and removable.
    bridge_pool = ThreadPoolExecutor(max_workers=4)
    bridges_gone = {
        lab["lab"]: bridge_pool.submit(
            bridge_absent, lab["bridge"], bridges[lab["lab"]], check_mode
        )
        for lab in labs
        if lab["lab"] not in failed
    }
    bridge_pool.shutdown(wait=False)

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

    reached = set()
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

        def network(lab=lab):
            reached.add(lab["lab"])
            return bridges_gone[lab["lab"]].result() + network_absent(
                lab["lab"], lab["bridge"], None, lab["tag"], params["state_dir"], check_mode
            )

        step(name, "network", network)
    # A lab that failed before its network step: its bridge went all the same (or failed).
    for name, gone in bridges_gone.items():
        if name in reached:
            continue
        try:
            done[name]["network"] += gone.result()
        except FAILURES as error:
            errors.append(f"lab {name}: bridge not removed: {error}")
    return done, errors


def outcome(params, check_mode, diff=False):
    """The module's result for validated `params`: everything of the labs removed (in check
    mode, what would be), with `failed` and `msg` when something could not be. The diff is
    always there: Ansible shows it only with --diff."""
    problem = check_labs(params["labs"])
    if problem:
        return failure(problem)
    done, errors = remove(params, check_mode)
    actions = [line for pieces in done.values() for piece in PIECES for line in pieces[piece]]
    result = dict(
        changed=bool(actions),
        actions=actions,
        labs={lab: {"changed": any(pieces.values()), **pieces} for lab, pieces in done.items()},
        diff={"before": "".join(line + "\n" for line in actions), "after": ""},
    )
    if errors:
        result.update(failed=True, msg="; ".join(errors))
    return result
