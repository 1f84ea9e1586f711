# LTB module_utils: what the ltb_lab_links module does with its arguments (module_utils/
# ltb_module.py): every node interface of a lab an access port of the lab's bridge in its
# link's VLAN, with the lab's identity (module_utils/ltb_links.py). Standard library only.
from ansible.module_utils.ltb_links import port_states, wire
from ansible.module_utils.ltb_ovs import OvsError
from ansible.module_utils.ltb_module import failure

MODULE_SPEC = dict(
    argument_spec=dict(
        lab=dict(type="str", required=True),
        bridge=dict(type="str", required=True),
        ports=dict(type="list", elements="dict", required=True),
    ),
    supports_check_mode=True,
)


def outcome(params, check_mode, diff=False):
    lab, bridge, wanted = (params[key] for key in ("lab", "bridge", "ports"))
    for number, port in enumerate(wanted):
        absent = [key for key in ("name", "vlan", "node", "interface") if port.get(key) is None]
        if absent:
            return failure(f"ports[{number}] has no {', '.join(absent)}: {port!r}")
    try:
        # In check mode the node modules made no interface: wire all that deploy would make.
        todo, missing, current = wire(lab, bridge, wanted, check_mode)
    except OvsError as error:
        return failure(f"lab {lab!r}: links not wired: {error}")
    result = dict(
        changed=bool(todo),
        ports=[port["name"] for port in todo],
        missing=[f"{p['node']}:{p['interface']} ({p['name']})" for p in missing],
    )
    if diff and todo:
        states = [port_states(port, current) for port in todo]
        result["diff"] = dict(
            before="".join(before + "\n" for before, _ in states),
            after="".join(after + "\n" for _, after in states),
        )
    return result
