"""The lab tasks, in one registry: per task its playbook, its parameters and the lab states it
needs and leaves. The portal, the jobs, the scheduler and the CLI all read it; adding a task
is one `register(LabTask(...))` here (and its playbook).

Parameters are data. Each is a string that must match its rule as a whole (no trailing
newline); unknown parameters are refused. A parameter becomes one Ansible extra variable,
which the job layer hands to Ansible marked unsafe (jobs.runner), so it is never templated.

This module needs no Flask application: it is plain data and functions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ltb.mirror import MIRROR_NAME, SCOPES
from ltb.snapshot import SNAPSHOT_NAME
from ltb.topology import INTERFACE_NAME, NODE_NAME
from store.models import LabState

# Values in error messages are cut to this many characters.
SHOWN_VALUE_CHARS = 80


class TaskError(ValueError):
    """An unknown task, or parameters a task does not take; the message says which and why."""


@dataclass(frozen=True)
class Parameter:
    """One parameter of a task: the whole value must match `rule` (a regular expression)."""

    name: str
    extra_var: str  # the Ansible extra variable it becomes
    rule: str
    rule_text: str  # the rule in words, for errors and docs
    required: bool = False
    # Passed when the parameter is not given; None: not passed (the playbook's default holds).
    default: str | None = None

    def problem(self, task: str, value: Any) -> str | None:
        """Why `value` is not allowed for this parameter, or None if it is."""
        if not isinstance(value, str):
            return f"{task} {self.name} must be a string, not {type(value).__name__}"
        if re.fullmatch(self.rule, value) is None:
            return f"{task} {self.name} {_shown(value)} is not allowed: {self.rule_text}"
        return None


def choice(name: str, extra_var: str, options: tuple[str, ...], default: str) -> Parameter:
    """A parameter that is one of a few words."""
    return Parameter(
        name,
        extra_var,
        rule="|".join(re.escape(option) for option in options),
        rule_text=f"use one of {', '.join(options)}",
        default=default,
    )


def _pattern(pattern: re.Pattern[str]) -> str:
    """The body of an anchored name rule of ltb, to combine in a larger rule."""
    return re.sub(r"\\[Zz]$|\$$", "", re.sub(r"^(\^|\\A)", "", pattern.pattern))


@dataclass(frozen=True)
class LabTask:
    """A lab task: its playbook, parameters and the lab states around it."""

    name: str
    playbook: str  # under playbooks/
    summary: str
    parameters: tuple[Parameter, ...] = ()
    # States the lab must be in when the task is requested; None: any.
    needs: tuple[LabState, ...] | None = None
    # The lab's state while the task runs, and after it succeeded or failed; None: unchanged.
    while_running: LabState | None = None
    on_success: LabState | None = None
    on_failure: LabState | None = None

    def parameter(self, name: str) -> Parameter:
        for parameter in self.parameters:
            if parameter.name == name:
                return parameter
        raise KeyError(name)

    def check_params(self, params: Mapping[str, Any]) -> None:
        """Raise TaskError naming every parameter that is unknown, missing or not allowed."""
        known = [p.name for p in self.parameters]
        problems = []
        for name in params:
            if name not in known:
                takes = f"its parameters: {', '.join(known)}" if known else "it takes none"
                problems.append(f"{self.name} has no parameter {_shown(name)} ({takes})")
        for parameter in self.parameters:
            if parameter.name not in params:
                if parameter.required:
                    problems.append(
                        f"{self.name} needs {parameter.name} ({parameter.rule_text}): "
                        f"-p {parameter.name}=..."
                    )
                continue
            problem = parameter.problem(self.name, params[parameter.name])
            if problem:
                problems.append(problem)
        if problems:
            raise TaskError("; ".join(problems))

    def extra_vars(self, params: Mapping[str, Any]) -> dict[str, str]:
        """The Ansible extra variables of checked `params` (defaults filled in)."""
        self.check_params(params)
        extra = {}
        for parameter in self.parameters:
            value = params.get(parameter.name, parameter.default)
            if value is not None:
                extra[parameter.extra_var] = value
        return extra


def _shown(value: str) -> str:
    text = repr(value)
    return text if len(text) <= SHOWN_VALUE_CHARS else text[: SHOWN_VALUE_CHARS - 3] + "..."


TASKS: dict[str, LabTask] = {}


def register(task: LabTask) -> LabTask:
    if task.name in TASKS:
        raise ValueError(f"lab task {task.name!r} is registered twice")
    TASKS[task.name] = task
    return task


def lab_task(name: str) -> LabTask:
    """The task called `name`; TaskError listing the known tasks if there is none."""
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise TaskError(f"unknown task {_shown(name)} (known: {', '.join(TASKS)})") from None


SNAPSHOT_NAME_TEXT = (
    "use 1-63 lower-case letters, digits and '_.-', starting with a letter or digit"
)


def _snapshot_name(extra_var: str) -> Parameter:
    return Parameter(
        "name",
        extra_var,
        rule=_pattern(SNAPSHOT_NAME),
        rule_text=SNAPSHOT_NAME_TEXT,
        required=True,
    )


register(
    LabTask(
        "deploy",
        "deploy.yml",
        "Deploy the lab (nodes and links) from its topology in the store.",
        while_running=LabState.DEPLOYING,
        on_success=LabState.RUNNING,
        on_failure=LabState.FAILED,
    )
)
register(
    LabTask(
        "remove",
        "remove.yml",
        "Remove everything of the lab, also after a deploy that failed or was cut short.",
        while_running=LabState.REMOVING,
        on_success=LabState.REMOVED,
        on_failure=LabState.FAILED,
    )
)
register(
    LabTask(
        "mirror",
        "mirror.yml",
        "Mirror a link or interface of the running lab (or remove the mirror).",
        parameters=(
            Parameter(
                "endpoint",
                "mirror_endpoint",
                rule=f"(?:{_pattern(NODE_NAME)}):(?:{_pattern(INTERFACE_NAME)})",
                rule_text="give NODE:INTERFACE with a node and an interface name of the "
                "topology (lower-case letters, digits and '-', interfaces also '_.')",
                required=True,
            ),
            choice("scope", "mirror_scope", SCOPES, default="link"),
            choice("state", "mirror_state", ("present", "absent"), default="present"),
            Parameter(
                "name",
                "mirror_name",
                rule=_pattern(MIRROR_NAME),
                rule_text="use 1-32 lower-case letters, digits and '-', starting with a "
                "letter or digit",
            ),
        ),
        needs=(LabState.RUNNING,),
    )
)
register(
    LabTask(
        "snapshot",
        "snapshot.yml",
        "Take (or delete) the named snapshot of the running lab.",
        parameters=(
            _snapshot_name("snapshot"),
            choice("action", "snapshot_action", ("create", "delete"), default="create"),
        ),
        needs=(LabState.RUNNING,),
    )
)
register(
    LabTask(
        "restore",
        "restore.yml",
        "Remove the lab and deploy it again from its named snapshot (taken from the same "
        "topology); repairs a failed lab too.",
        parameters=(_snapshot_name("snapshot"),),
        # Restore removes whatever runs of the lab first, so it needs no particular state.
        while_running=LabState.DEPLOYING,
        on_success=LabState.RUNNING,
        on_failure=LabState.FAILED,
    )
)
