# LTB module_utils: what the ltb_snapshot module does with its arguments (module_utils/
# ltb_module.py): create, delete, list and plan snapshots, replay a lab's runtime state, and
# restore a lab in place. Standard library only.
from ansible.module_utils import ltb_snapshot as snapshots
from ansible.module_utils import ltb_snapshot_restore as in_place
from ansible.module_utils.ltb_snapshot_docker import DockerError
from ansible.module_utils.ltb_module import failure

ACTIONS = ["create", "delete", "list", "plan", "runtime", "restore", "cleanup"]

MODULE_SPEC = dict(
    argument_spec=dict(
        lab=dict(type="str", required=True),
        name=dict(type="str"),
        action=dict(type="str", choices=ACTIONS, default="create"),
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
        topology_sha256=dict(type="str"),
        topology_file=dict(type="str", default="the topology given"),
        containers=dict(type="list", elements="dict", default=[]),
        container_settings=dict(type="dict", default={}),
        bridge=dict(type="str"),
        ports=dict(type="list", elements="dict", default=[]),
    ),
    required_if=[
        ("action", action, ["name"])
        for action in ("create", "delete", "plan", "runtime", "restore")
    ]
    + [("action", action, ["nodes"]) for action in ("create", "runtime", "restore")]
    + [("action", "restore", ["node_prefix", "topology_sha256", "bridge"])],
    supports_check_mode=True,
)


def outcome(p, check, diff=False):
    lab, name, nodes = p["lab"], p["name"], p["nodes"]
    where = snapshots.Settings(
        state_dir=p["state_dir"],
        ssh_key=p["ssh_key"],
        libvirt_uri=p["libvirt_uri"],
        min_free_bytes=p["min_free_bytes"],
        vm_memory=p["vm_memory"],
        parallel=p["parallel"],
    )
    deployed = snapshots.deployed_topology(lab, where).is_file()
    try:
        result = _act(p, lab, name, nodes, where, check, diff)
    except (DockerError, *in_place.ERRORS) as error:
        # Snapshot errors name the lab; the Docker, node, veth and OVS ones do not.
        named = isinstance(error, snapshots.SnapshotError)
        return failure(str(error) if named else f"lab {lab}: {error}")
    return dict(deployed=deployed, **result)


def _act(p, lab, name, nodes, where, check, diff):
    if p["action"] == "create":
        if check:
            return dict(changed=True, snapshot=snapshots.would_take(lab, name, nodes, where))
        return dict(changed=True, snapshot=snapshots.take_snapshot(lab, name, nodes, where))
    if p["action"] in ("delete", "cleanup"):
        if check:
            cleaned = snapshots.find_leftovers(lab, where)
        else:
            cleaned = snapshots.clean_leftovers(lab, nodes, where)
        deleted = p["action"] == "delete" and snapshots.delete_snapshot(
            lab, name, where, check_mode=check
        )
        return dict(changed=bool(deleted or cleaned), cleaned=cleaned)
    if p["action"] == "list":
        return dict(changed=False, snapshots=snapshots.list_snapshots(lab, where))
    if p["action"] == "runtime":
        routes, warnings = snapshots.restore_runtime(
            lab, name, nodes, where, check_mode=check, resumed=p["resumed"]
        )
        return dict(
            changed=any(routes.values()), routes=routes, not_replayed=warnings, warnings=warnings
        )
    if p["action"] == "restore":
        request = in_place.Request(
            lab,
            name,
            nodes=nodes,
            containers=p["containers"],
            container_params=p["container_settings"],
            bridge=p["bridge"],
            ports=p["ports"],
            node_prefix=p["node_prefix"],
            topology_sha256=p["topology_sha256"],
            topology_file=p["topology_file"],
            timeout=p["ready_timeout"],
        )
        result = in_place.restore(request, where, check_mode=check)
        actions = result.get("actions", [])
        if diff and actions:
            result["diff"] = dict(before="", after="".join(f"{line}\n" for line in actions))
        return dict(changed=bool(actions), **result)
    return dict(changed=False, plan=snapshots.restore_plan(lab, name, where, check_mode=check))
