# LTB module_utils: what the ltb_mirror module does with its arguments (module_utils/
# ltb_module.py): a mirror of a running lab's link or interface made or removed
# (module_utils/ltb_mirror.py). Standard library only.
from ansible.module_utils.ltb_mirror import (
    MirrorError,
    ensure_mirror,
    mirror_changes,
    mirror_spec,
    remove_mirror,
    removal_changes,
)
from ansible.module_utils.ltb_module import failure

MODULE_SPEC = dict(
    argument_spec=dict(
        lab=dict(type="str", required=True),
        tag=dict(type="str", required=True),
        bridge=dict(type="str", required=True),
        ports=dict(type="list", elements="dict", required=True),
        endpoint=dict(type="str", required=True),
        scope=dict(type="str", choices=["link", "interface"], default="link"),
        name=dict(type="str"),
        state=dict(type="str", choices=["present", "absent"], default="present"),
    ),
    supports_check_mode=True,
)


def outcome(p, check_mode, diff=False):
    try:
        spec = mirror_spec(
            p["lab"], p["tag"], p["bridge"], p["ports"], p["scope"], p["endpoint"], p["name"]
        )
        if p["state"] == "present":
            actions = mirror_changes(spec) if check_mode else ensure_mirror(spec)
        else:
            actions = removal_changes(spec) if check_mode else remove_mirror(spec)
    except (MirrorError, KeyError, OSError) as error:
        return failure(f"lab {p['lab']!r}: mirror of {p['endpoint']} not changed: {error}")
    return dict(
        changed=bool(actions),
        actions=actions,
        capture_interface=spec.capture_interface,
        mirrored=spec.description,
        diff=dict(before="", after="".join(action + "\n" for action in actions)),
    )
