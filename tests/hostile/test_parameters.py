"""Task parameters and topology values are data: Jinja in any of them runs nothing.

Each case is a real run: jobs submitted to PostgreSQL and Redis, rq workers, ansible-runner
and ansible-playbook (ansible-core 2.19), and Docker for the deployed lab. A marker file that
a templated value would create shows whether anything was evaluated. No parameter of any task
takes free text (each has a rule that leaves no room for '{'), so Jinja is refused at submit;
the runner path is also driven directly with hostile values, to show that the `!unsafe`
marking holds on its own.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from rq import Queue
from sqlalchemy import func, select

from jobs import tasks
from jobs.queue import submit
from jobs.runner import RunObserver, run_playbook
from ltb.resources import find_lab_resources
from store.db import engine
from store.labs import LabError
from store.models import Job, Lab, LabState, utcnow
from store.tasks import TASKS
from tests.integration.conftest import assert_no_leftovers, remove
from tests.jobs.conftest import TASK_WAIT, job_ended, job_row, lab_row, wait_for

pytestmark = pytest.mark.integration

MARKER = Path("/tmp/ltb-hostile-a1-marker")  # noqa: S108 - what a templated value would make
JINJA = f"{{{{ lookup('pipe', 'touch {MARKER}') }}}}"
# Values each parameter accepts, to set the others while one is hostile.
VALID = {"endpoint": "a:eth1", "scope": "link", "state": "present", "name": "s1"}
VALID |= {"action": "create"}


@pytest.fixture(autouse=True)
def no_marker():
    MARKER.unlink(missing_ok=True)
    yield
    assert not MARKER.exists(), f"a hostile value was templated: {MARKER} exists"


def run_directly(settings, lab: str, topology: str, playbook: str | Path, extravars: dict):
    """Run a playbook through the job layer's runner, without the submit check."""
    observer = RunObserver(task="hostile")
    result = run_playbook(
        settings,
        job_id=f"a1-{uuid.uuid4()}",
        lab=lab,
        topology=topology,
        hypervisor=settings.hypervisor,
        playbook=str(playbook),
        extravars=extravars,
        observer=observer,
        cancelled=lambda: False,
        on_progress=lambda: None,
    )
    return result, observer


def new_lab(store, name: str, text: str, state: LabState) -> int:
    """A lab row as request_task leaves it, without allocating anything for the lab."""
    now = utcnow()
    with store.begin() as session:
        row = Lab(
            name=name,
            topology=text,
            state=state.value,
            hypervisor="localhost",
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        session.flush()
        return row.id


@pytest.fixture
def private_state_dir(tmp_path, monkeypatch):
    """A state directory of its own for runs of labs that are never deployed: the inventory
    plugin records their allocation there, not in the platform's."""
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.setenv("LTB_STATE_DIR", str(state))
    return state


def test_jinja_in_every_parameter_of_every_task_is_refused_at_submit_and_nothing_is_queued(
    store, redis_db, job_settings, topology
):
    lab = "a1-params"
    # A known, running lab, so that only the parameters are judged.
    lab_id = new_lab(store, lab, topology("pair.lab.yml", lab), LabState.RUNNING)
    refused = 0
    for task in TASKS.values():
        valid = {p.name: VALID[p.name] for p in task.parameters}
        for parameter in task.parameters:
            for hostile in (JINJA, f"a:{JINJA}", VALID[parameter.name] + "\n"):
                with pytest.raises(LabError, match=rf"^{task.name} {parameter.name} .* is not"):
                    submit(lab, task.name, params=valid | {parameter.name: hostile})
                refused += 1
        with pytest.raises(LabError, match=rf"{task.name} has no parameter 'extra'"):
            submit(lab, task.name, params=valid | {"extra": JINJA})
    assert refused == 3 * sum(len(t.parameters) for t in TASKS.values()) == 21

    with store() as session:
        assert not session.scalars(select(Job).where(Job.lab_id == lab_id)).all()
        assert session.get(Lab, lab_id).state == "running"
    assert Queue(job_settings.queue, connection=redis_db).count == 0


def test_hostile_extra_variables_reach_a_playbook_byte_for_byte_and_run_nothing(
    job_settings, topology, tmp_path, private_state_dir
):
    values = {
        "v_pipe": JINJA,
        "v_expression": "{{ 7 * 7 }}",
        "v_blocks": "{% for x in [1] %}{{ x }}{% endfor %}{# c #}{% raw %}",
        "v_quotes": "'\"\\ !unsafe \"{{\" '}}'",
        "v_lines": "first\n{{ lookup('env', 'HOME') }}\n\ttab  \n",
        "v_shell": "$(touch /tmp/x) `id` ${HOME} ; rm -rf /nonexistent",
        "v_unicode": "ü ✓ \u2028 end",
        "v_yaml": "- [a]: b\n--- !!python/object:os.system\n&x *x",
    }
    nested = {"v_nested": {"a": [JINJA, {"b": "{{ 1 + 1 }}"}], "n": 3}}
    out = tmp_path / "out"
    playbook = tmp_path / "echo.yml"
    playbook.write_text(
        f"""
- name: Extra variables and the environment are written where the test reads them
  hosts: hypervisors
  gather_facts: false
  tasks:
    - name: Each extra variable is in its own file
      ansible.builtin.copy:
        content: "{{{{ lookup('ansible.builtin.vars', item) }}}}"
        dest: "{out}/{{{{ item }}}}"
        mode: "0600"
      loop: {json.dumps(sorted(values))}
    - name: Nested extra variables are in a JSON file
      ansible.builtin.copy:
        content: "{{{{ v_nested | to_json }}}}"
        dest: "{out}/v_nested.json"
        mode: "0600"
    - name: Environment of a module
      ansible.builtin.command: env -0
      register: module_env
      changed_when: false
    - name: Environments are in files
      ansible.builtin.copy:
        content: "{{{{ item.content }}}}"
        dest: "{out}/{{{{ item.name }}}}"
        mode: "0600"
      loop:
        - name: module.env
          content: "{{{{ module_env.stdout }}}}"
        - name: lookup.env
          content: "{{{{ lookup('ansible.builtin.env', 'LTB_DATABASE_URL', default='') }}}}"
"""
    )
    out.mkdir()
    result, observer = run_directly(
        job_settings, "a1-runner", topology("pair.lab.yml", "a1-runner"), playbook, values | nested
    )

    assert result.status == "successful", observer.failures
    for name, value in values.items():
        assert (out / name).read_bytes() == value.encode(), name
    assert json.loads((out / "v_nested.json").read_text()) == nested["v_nested"]
    # The playbook sees none of the worker's connections (the test run's own are set).
    module_env = dict(
        entry.split("=", 1) for entry in (out / "module.env").read_text().split("\0") if entry
    )
    assert "LTB_DATABASE_URL" not in module_env and "LTB_REDIS_URL" not in module_env
    assert module_env["LTB_STATE_DIR"] == str(private_state_dir)
    assert module_env["ANSIBLE_HOST_KEY_CHECKING"] == "False"
    assert (out / "lookup.env").read_text() == ""


def test_jinja_in_every_extra_variable_of_the_real_playbooks_is_not_templated(
    job_settings, topology, private_state_dir
):
    """The runner path without the submit check: the task playbooks get Jinja in each of
    their extra variables, fail on the values as they are, and run nothing."""
    lab = "a1-runner"
    text = topology("pair.lab.yml", lab)
    for task in TASKS.values():
        if not task.parameters:
            continue
        extravars = {p.extra_var: JINJA for p in task.parameters}
        result, observer = run_directly(job_settings, lab, text, task.playbook, extravars)
        assert result.status == "failed", (task.name, observer.failures)
        assert not MARKER.exists(), f"{task.name}: {MARKER} was made"
        # The value reached the playbook's checks as it was written.
        messages = "\n".join(failure["msg"] for failure in observer.failures)
        assert f"touch {MARKER}" in messages, (task.name, observer.failures)
    assert find_lab_resources(lab).empty()


def test_a_refused_job_gives_its_lab_back_the_state_it_had(
    store, processes, topology, job_settings, redis_db
):
    """A job refused the lab's lock (another task of the lab runs) or refused by the
    worker's own check of its parameters never started: the lab is as it was before."""
    lab = "a1-refused"
    lab_id = new_lab(store, lab, topology("pair.lab.yml", lab), LabState.REMOVED)

    with engine(job_settings.database_url).connect() as holder:
        # Another task of the lab holds its lock (as a worker that runs it would).
        assert holder.scalar(select(func.pg_try_advisory_lock(tasks.LAB_LOCK_SPACE, lab_id)))
        holder.commit()
        try:
            deploy = submit(lab, "deploy")
            assert lab_row(store, lab).state == "deploying"
            processes.start("worker")
            refused = wait_for(lambda: job_ended(store, deploy), TASK_WAIT, "deploy", processes)
            assert refused.status == "failed" and refused.started_at is None
            assert "another task of lab a1-refused is running" in refused.result["error"]
            assert lab_row(store, lab).state == "removed"

            with store.begin() as session:
                session.get(Lab, lab_id).state = LabState.FAILED.value
            removal = submit(lab, "remove")
            refused = wait_for(lambda: job_ended(store, removal), TASK_WAIT, "remove", processes)
            assert refused.status == "failed" and "another task" in refused.result["error"]
            assert lab_row(store, lab).state == "failed"
        finally:
            holder.scalar(select(func.pg_advisory_unlock(tasks.LAB_LOCK_SPACE, lab_id)))
            holder.commit()

    # A job whose row was written around request_task, with a hostile parameter: the
    # worker checks the parameters again and never runs it.
    forged = str(uuid.uuid4())
    with store.begin() as session:
        session.get(Lab, lab_id).state = LabState.RUNNING.value
        session.add(
            Job(
                id=forged,
                lab_id=lab_id,
                task="mirror",
                params={"endpoint": f"a:{JINJA}"},
                status="queued",
                lab_state_before="running",
                enqueued_at=utcnow(),
                progress={},
                result={},
            )
        )
    Queue(job_settings.queue, connection=redis_db).enqueue_call(
        tasks.run_task, args=("mirror", lab), job_id=forged
    )
    job = wait_for(lambda: job_ended(store, forged), TASK_WAIT, "the forged job", processes)
    assert job.status == "failed" and job.started_at is None
    assert "not run: mirror endpoint" in job.result["error"]
    assert lab_row(store, lab).state == "running"
    assert job_row(store, forged).progress == {}


def test_jinja_in_a_startup_file_and_the_description_is_deployed_as_written(
    store, processes, docker_client, tmp_path
):
    lab = "a1-files"
    content = (
        f"{JINJA}\n{{% if true %}}x{{% endif %}} {{# c #}}\n$(id) `id` ${{HOME}}\nü ✓\n"
        "  no newline at the end  "
    )
    text = (
        f"name: {lab}\n"
        f"description: {json.dumps(JINJA)}\n"
        "nodes:\n"
        "  n1:\n"
        "    files:\n"
        f"      /etc/ltb/hostile.txt: {json.dumps(content)}\n"
    )
    processes.start("worker")
    try:
        deploy = submit(lab, "deploy", topology=text)
        job = wait_for(lambda: job_ended(store, deploy), TASK_WAIT, "the deploy", processes)
        assert job.status == "successful", job.result
        node = docker_client.containers.get(f"ltb-{lab}.n1")
        read = node.exec_run(["cat", "/etc/ltb/hostile.txt"])
        assert read.exit_code == 0 and read.output == content.encode()
        assert not MARKER.exists()

        removal = submit(lab, "remove")
        job = wait_for(lambda: job_ended(store, removal), TASK_WAIT, "the remove", processes)
        assert job.status == "successful", job.result
        assert_no_leftovers(lab)
    finally:
        if not find_lab_resources(lab).empty():
            path = tmp_path / f"{lab}.lab.yml"
            path.write_text(text)
            remove(path)
