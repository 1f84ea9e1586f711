# LTB action plugin: a lab's allocation released on the controller, in Ansible's own process.
"""ltb_lab_allocation releases the lab's entry of the controller's allocation registry
(ltb.allocation.Registry) here, in the controller's Ansible process, whose Python already holds
the ltb package (the inventory plugin imported it): no module run, which would cost a Python
start-up and the import of ltb for one file write."""

from __future__ import annotations

from pathlib import Path

from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self._task.args
        # The module's own checks, as it would make them on the controller.
        unknown = sorted(set(args) - {"lab", "state", "registry"})
        if unknown:
            problem = f"unknown options {', '.join(unknown)}"
        elif not args.get("lab"):
            problem = "lab is required"
        elif args.get("state", "absent") != "absent":
            problem = "state must be absent"
        else:
            problem = ""
        if problem:
            return {**result, "failed": True, "msg": f"ltb_lab_allocation: {problem}"}
        from ltb.allocation import release_from_file

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
