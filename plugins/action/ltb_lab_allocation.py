# LTB action plugin: a lab's allocation released on the controller, in Ansible's own process.
"""With state=absent, ltb_lab_allocation releases the lab's entry of the controller's
allocation registry (ltb.allocation.Registry) here, in the controller's Ansible process,
whose Python already holds the ltb package (the inventory plugin imported it): no module run,
which would cost a Python start-up and the import of ltb for one file write. Every other
state runs the module on the task's host as usual (the hypervisor's own python3)."""

from __future__ import annotations

from pathlib import Path

from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self._task.args
        if args.get("state", "present") != "absent":
            result.update(
                self._execute_module(
                    module_name="ltb_lab_allocation", module_args=args, task_vars=task_vars
                )
            )
            return result
        # The module's own checks, as it would make them on the controller.
        unknown = sorted(set(args) - {"lab", "state", "registry", "state_dir"})
        if unknown or not args.get("lab"):
            reason = f"unknown options {', '.join(unknown)}" if unknown else "lab is required"
            return {**result, "failed": True, "msg": f"ltb_lab_allocation: {reason}"}
        from ltb.allocation import release_from_file

        result["conflicts"] = []
        if not args.get("registry"):
            # A run of a job: the lab store holds the lab's allocation and releases it.
            return {**result, "changed": False}
        registry_file = Path(str(args["registry"])).expanduser()
        try:
            result["changed"] = release_from_file(
                str(args["lab"]), registry_file, self._play_context.check_mode
            )
        except (RuntimeError, ValueError, OSError) as error:
            return {**result, "failed": True, "msg": str(error)}
        return result
