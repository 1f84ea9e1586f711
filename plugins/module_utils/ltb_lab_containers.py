# LTB module_utils: what the ltb_lab_containers module does with its arguments (module_utils/
# ltb_module.py): a lab's container nodes checked, made, awaited or removed, several at a time
# (module_utils/ltb_containers.py), and wired to the lab's links. Standard library only.
from ansible.module_utils.ltb_containers import Lab, NodeError, normalise_nodes
from ansible.module_utils.ltb_docker import Docker, DockerError
from ansible.module_utils.ltb_links import wire
from ansible.module_utils.ltb_ovs import OvsError
from ansible.module_utils.ltb_veth import VethError
from ansible.module_utils.ltb_module import failure

MODULE_SPEC = dict(
    argument_spec=dict(
        lab=dict(type="str", required=True),
        state=dict(
            type="str", choices=["preflight", "present", "ready", "absent"], default="present"
        ),
        nodes=dict(type="list", elements="dict", default=[]),
        images=dict(type="dict", default={}),
        default_image=dict(type="str", default="ltb/node:latest"),
        copy_files=dict(type="bool", default=True),
        authorized_keys=dict(type="list", elements="str", default=[], no_log=False),
        capabilities=dict(type="list", elements="str", default=[]),
        sysctls=dict(type="dict", default={}),
        ready_timeout=dict(type="int", default=120),
        wait=dict(type="bool", default=True),
        hypervisor=dict(type="str", default="this hypervisor"),
        bridge=dict(type="str"),
        ports=dict(type="list", elements="dict"),
        parallel=dict(type="int", default=8),
    ),
    required_by={"ports": "bridge"},
    supports_check_mode=True,
)


def outcome(params, check_mode, diff=False):
    # Each node as the documented suboptions, so a missing key fails here, naming the node.
    try:
        nodes = normalise_nodes(params["nodes"])
    except NodeError as error:
        return failure(str(error))
    lab = Lab(params, Docker(), check_mode)
    state = params["state"]
    try:
        if state == "absent":
            removed, errors, images = lab.absent()
            result = dict(
                changed=bool(removed or images),
                removed=removed,
                actions=[f"remove container {c}" for c in removed]
                + [f"remove untagged image {i}" for i in images],
            )
            if errors:
                return failure("containers not removed: " + "; ".join(errors), **result)
            return result
        if state == "preflight":
            lab.images(nodes)
            return dict(changed=False, actions=[])
        actions, errors = [], []
        if state == "present":
            actions, errors = lab.present(nodes)
            if params["ports"] is not None and not errors:
                wired, _, _ = wire(params["lab"], params["bridge"], params["ports"], check_mode)
                actions += [f"wire port {port['name']} in VLAN {port['vlan']}" for port in wired]
        if not errors and not check_mode and (state == "ready" or params["wait"]):
            errors = lab.wait_ready(nodes)
    except NodeError as error:
        return failure(str(error))
    except (DockerError, VethError) as error:
        return failure(f"lab {params['lab']}: {error}")
    except OvsError as error:
        return failure(f"lab {params['lab']}: links not wired: {error}")
    result = dict(changed=bool(actions), actions=actions)
    if diff and actions:
        result["diff"] = dict(before="", after="".join(f"{line}\n" for line in actions))
    if errors:
        return failure("; ".join(errors), **result)
    return result
