"""The hypervisor-side code of plugins/module_utils/, importable in the controller's Python.

Ansible ships `plugins/module_utils/ltb_*.py` to a hypervisor with each module that imports
it (`from ansible.module_utils.ltb_ovs import ...`). The controller (ltb.mirror, the capture
command) and the unit tests use the same files: adding the directory to the path of the
installed `ansible.module_utils` package makes those imports resolve here as they do there,
so there is one implementation of each.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

import ansible.module_utils

MODULE_UTILS = Path(__file__).resolve().parent.parent / "plugins" / "module_utils"


def load(name: str) -> ModuleType:
    """The module_utils file `name` (e.g. 'ltb_mirror') as `ansible.module_utils.<name>`."""
    if str(MODULE_UTILS) not in ansible.module_utils.__path__:
        ansible.module_utils.__path__.append(str(MODULE_UTILS))
    return importlib.import_module(f"ansible.module_utils.{name}")


def result(action: Any, module: str, code: str, task_vars: dict[str, Any]) -> dict[str, Any]:
    """The result of LTB module `module` for the task of `action`, its action plugin.

    On a hypervisor reached over a connection (SSH), Ansible runs the module there. On this
    machine (a local connection, no become) the module would run the same code as the same
    user in a second Python: here `code`'s outcome() (plugins/module_utils/ltb_module.py) is
    called in this process, with the arguments checked against the same MODULE_SPEC."""
    if action._connection.transport != "local" or action._play_context.become:
        return action._execute_module(
            module_name=module, module_args=action._task.args, task_vars=task_vars
        )
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
    from ansible.module_utils.errors import UnsupportedError

    impl = load(code)
    spec = {key: value for key, value in impl.MODULE_SPEC.items() if key != "supports_check_mode"}
    checked = ArgumentSpecValidator(**spec).validate(action._task.args)
    if checked.error_messages:
        # Worded as AnsibleModule words them.
        return {
            "failed": True,
            "msg": "; ".join(
                f"Unsupported parameters for ({module}) module: {error}"
                if isinstance(error, UnsupportedError)
                else str(error)
                for error in checked.errors.errors
            ),
        }
    done = impl.outcome(
        checked.validated_parameters, action._play_context.check_mode, action._play_context.diff
    )
    done.setdefault("changed", False)
    return done


def action_plugin(module: str, code: str) -> type:
    """The action plugin of LTB module `module` whose code is module_utils file `code`: its
    task's result, from the module or from this process (result)."""
    from ansible.plugins.action import ActionBase

    class ActionModule(ActionBase):
        _supports_check_mode = True

        def run(self, tmp=None, task_vars=None):
            done = super().run(tmp, task_vars)
            done.update(result(self, module, code, task_vars))
            return done

    return ActionModule
