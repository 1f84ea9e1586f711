# LTB module_utils: how an LTB module whose work is one function of its arguments runs.
# Standard library and Ansible's own module_utils only.
#
# Such a module's code lives in its module_utils file, which has
# - MODULE_SPEC: AnsibleModule's keywords (argument_spec, required_if, supports_check_mode...);
# - outcome(params, check_mode, diff): the result, a dict with `changed`, `failed` and `msg`
#   when it failed, and `warnings` (strings) to warn.
# The module itself is `run(MODULE_SPEC, outcome)`, on any hypervisor. For the hypervisor that
# is the controller's own machine, the module's action plugin calls the same outcome() in the
# controller's process instead (ltb/module_utils.py, result): the module run would be this
# code in a second Python, as the same user, and packing, starting and importing it cost 0.3
# to 0.6 s per run.


def failure(msg, **result):
    """An outcome that failed: `msg` says why, `result` holds what was done before it (by
    default, no change)."""
    return {"changed": False, **result, "failed": True, "msg": msg}


def run(module_spec, outcome):
    # Here, not at the top: the controller imports these files too (failure, for one) and
    # needs no AnsibleModule.
    from ansible.module_utils.basic import AnsibleModule

    module = AnsibleModule(**module_spec)
    result = outcome(module.params, module.check_mode, module._diff)
    for warning in result.pop("warnings", None) or []:
        module.warn(warning)
    if result.get("failed"):
        module.fail_json(**result)
    module.exit_json(**result)
