"""The registry of lab tasks (store.tasks): one entry per task, read by the portal, the jobs
and the CLI; parameters checked as whole strings against each task's rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.__main__ import main as jobs_cli
from jobs.__main__ import parse_params
from store.models import LabState
from store.tasks import TASKS, LabTask, TaskError, lab_task, register

ROOT = Path(__file__).parents[2]
JINJA = "{{ lookup('pipe', 'id') }}"
# A value each parameter accepts.
VALID = {"endpoint": "r1:eth1", "scope": "interface", "state": "absent", "name": "s1"}
VALID |= {"action": "delete"}


def valid_params(task: LabTask) -> dict[str, str]:
    return {p.name: VALID[p.name] for p in task.parameters}


def test_every_task_has_its_playbook_and_the_playbook_uses_every_extra_variable():
    assert set(TASKS) == {"deploy", "remove", "mirror", "snapshot", "restore"}
    for task in TASKS.values():
        playbook = (ROOT / "playbooks" / task.playbook).read_text()
        for parameter in task.parameters:
            assert parameter.extra_var in playbook, (task.name, parameter.extra_var)


def test_lab_states_of_the_tasks_are_those_the_jobs_always_had():
    deploy, remove, mirror = lab_task("deploy"), lab_task("remove"), lab_task("mirror")
    assert (deploy.while_running, deploy.on_success, deploy.on_failure) == (
        LabState.DEPLOYING,
        LabState.RUNNING,
        LabState.FAILED,
    )
    assert remove.on_success == LabState.REMOVED and remove.needs is None
    assert mirror.needs == (LabState.RUNNING,) and mirror.on_failure is None
    assert lab_task("snapshot").needs == (LabState.RUNNING,)
    assert lab_task("restore").needs is None


def test_a_task_registered_twice_and_an_unknown_task_are_errors_that_list_the_tasks():
    with pytest.raises(ValueError, match="registered twice"):
        register(LabTask("deploy", "deploy.yml", "again"))
    with pytest.raises(TaskError, match=r"unknown task 'nope' \(known: deploy, remove, mirror"):
        lab_task("nope")


def test_valid_parameters_become_extra_variables_with_defaults():
    assert lab_task("mirror").extra_vars({"endpoint": "r-1:eth1.100"}) == {
        "mirror_endpoint": "r-1:eth1.100",
        "mirror_scope": "link",
        "mirror_state": "present",
    }
    assert lab_task("snapshot").extra_vars({"name": "before_ospf.1"}) == {
        "snapshot": "before_ospf.1",
        "snapshot_action": "create",
    }
    assert lab_task("restore").extra_vars({"name": "s1"}) == {"snapshot": "s1"}
    assert lab_task("deploy").extra_vars({}) == {}
    for task in TASKS.values():
        task.check_params(valid_params(task))


def test_unknown_parameters_are_refused_with_the_known_ones():
    with pytest.raises(
        TaskError,
        match=r"mirror has no parameter 'mode' \(its parameters: "
        r"endpoint, scope, state, name\)",
    ):
        lab_task("mirror").check_params({"endpoint": "r1:eth1", "mode": "x"})
    with pytest.raises(TaskError, match=r"deploy has no parameter 'x' \(it takes none\)"):
        lab_task("deploy").check_params({"x": "1"})


def test_a_missing_required_parameter_is_named_with_its_rule():
    with pytest.raises(TaskError, match=r"mirror needs endpoint \(give NODE:INTERFACE"):
        lab_task("mirror").check_params({})
    with pytest.raises(TaskError, match="restore needs name"):
        lab_task("restore").check_params({})


@pytest.mark.parametrize(
    ("task", "name", "value", "rule"),
    [
        ("mirror", "endpoint", "r1", "give NODE:INTERFACE"),
        ("mirror", "endpoint", "R1:eth1", "give NODE:INTERFACE"),
        ("mirror", "endpoint", "r1:eth1:x", "give NODE:INTERFACE"),
        ("mirror", "endpoint", "r1:" + "e" * 16, "give NODE:INTERFACE"),
        ("mirror", "scope", "node", "use one of link, interface"),
        ("mirror", "state", "Present", "use one of present, absent"),
        ("mirror", "name", "", "use 1-32 lower-case"),
        ("mirror", "name", "a" * 33, "use 1-32 lower-case"),
        ("snapshot", "name", "Bad/Name", "use 1-63 lower-case"),
        ("snapshot", "name", "../x", "use 1-63 lower-case"),
        ("snapshot", "action", "create ", "use one of create, delete"),
        ("restore", "name", "-x", "use 1-63 lower-case"),
    ],
)
def test_a_value_that_breaks_its_rule_is_refused_naming_the_parameter_and_the_rule(
    task, name, value, rule
):
    params = valid_params(lab_task(task)) | {name: value}
    with pytest.raises(TaskError, match=rf"{task} {name} .* is not allowed: {rule}"):
        lab_task(task).check_params(params)


@pytest.mark.parametrize(
    ("task", "name"), [(t.name, p.name) for t in TASKS.values() for p in t.parameters]
)
def test_every_parameter_refuses_a_trailing_newline_jinja_and_non_strings(task, name):
    spec = lab_task(task)
    good = valid_params(spec)
    for bad in (good[name] + "\n", "\n" + good[name], JINJA, f"r1:{JINJA}", good[name] + JINJA):
        with pytest.raises(TaskError, match=f"{task} {name} "):
            spec.check_params(good | {name: bad})
    for bad in (1, ["r1:eth1"], {"a": "b"}, None):
        with pytest.raises(TaskError, match=f"{task} {name} must be a string"):
            spec.check_params(good | {name: bad})


def test_every_problem_of_a_request_is_reported_at_once():
    with pytest.raises(TaskError) as refused:
        lab_task("mirror").check_params({"scope": "x", "colour": "red"})
    message = str(refused.value)
    assert "no parameter 'colour'" in message
    assert "needs endpoint" in message and "mirror scope 'x'" in message


def test_long_values_are_cut_in_errors():
    with pytest.raises(TaskError) as refused:
        lab_task("restore").check_params({"name": "x" * 10_000})
    assert len(str(refused.value)) < 300


def test_the_cli_offers_exactly_the_registered_tasks_and_lists_their_parameters(capsys):
    with pytest.raises(SystemExit) as exited:
        jobs_cli(["submit", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for task in TASKS.values():
        assert f"  {task.name}: " in out
        for parameter in task.parameters:
            assert f"    {parameter.name}  {parameter.rule_text}" in out
    with pytest.raises(SystemExit) as exited:
        jobs_cli(["submit", "reboot", "lab1"])
    assert exited.value.code == 2
    assert "invalid choice: 'reboot'" in capsys.readouterr().err


def test_cli_parameters_are_name_value_pairs_and_keep_the_value_whole():
    assert parse_params(["endpoint=r1:eth1", "name=a=b"]) == {"endpoint": "r1:eth1", "name": "a=b"}
    with pytest.raises(ValueError, match="give NAME=VALUE"):
        parse_params(["endpoint"])
