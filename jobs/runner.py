"""Run one playbook on one lab with ansible-runner and turn its events into progress.

A run is a private data directory made from the lab's topology (the one model, read by the
ltb_topology inventory plugin next to the hypervisors' inventory):

    <jobs dir>/<job id>/
        inventory/<lab>.lab.yml         the lab's topology, from the running-lab store
        inventory/hosts.yaml, group_vars -> the hypervisors' inventory (symlinks)
        env/extravars                   the task's extra variables, every string `!unsafe`
        artifacts/                      ansible-runner's own (events are not written there)

The project is the repository (its ansible.cfg, playbooks and roles). Events reach
`RunObserver`, never the text output; the directory is deleted after the run.

Job parameters are user input: Ansible templates extra variables, also those given as JSON
in a file, so `{{ lookup('pipe', ...) }}` in one would run on the controller. Every string
of the extra variables is therefore tagged `!unsafe` in env/extravars (which ansible-runner
passes as `-e @env/extravars`): Ansible uses such a value as it is and never templates it.
The playbook run gets a filtered environment (`playbook_environment`): the worker's database
and Redis URLs and anything secret-looking stay in the worker.
"""

from __future__ import annotations

import re
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from ansible_runner.interface import init_runner

from jobs.redact import URL_PASSWORD, redact, redact_text
from jobs.settings import ROOT, Settings

# Events that say how a task went on a host, and the counter each one increments.
HOST_RESULTS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_skipped": "skipped",
    "runner_on_unreachable": "unreachable",
}
# Stored events: the rest (verbose output, item-level noise of loops) is dropped.
KEPT_EVENTS = {
    "playbook_on_start",
    "playbook_on_play_start",
    "playbook_on_task_start",
    "playbook_on_stats",
    "runner_on_ok",
    "runner_on_failed",
    "runner_on_skipped",
    "runner_on_unreachable",
    "runner_item_on_failed",
}
MAX_RESULT_CHARS = 4000


@dataclass
class StoredEvent:
    seq: int
    event: str
    host: str | None
    task: str | None
    created_at: datetime
    data: dict[str, Any]


@dataclass
class RunObserver:
    """Collects progress and events of a run from ansible-runner's callbacks."""

    task: str
    tasks_expected: int | None = None
    status: str = "starting"
    play: str | None = None
    current_task: str | None = None
    tasks_started: int = 0
    first_task_at: datetime | None = None
    hosts: dict[str, dict[str, int]] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    pending: list[StoredEvent] = field(default_factory=list)
    _seq: int = 0

    def on_event(self, event: dict[str, Any]) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        host = data.get("host")
        if kind == "playbook_on_play_start":
            self.play = data.get("play")
        elif kind == "playbook_on_task_start":
            self.tasks_started += 1
            self.current_task = data.get("task")
            if self.first_task_at is None:
                self.first_task_at = datetime.now(UTC)
        elif kind in HOST_RESULTS and host:
            counts = self.hosts.setdefault(
                host, {"ok": 0, "changed": 0, "failed": 0, "skipped": 0, "unreachable": 0}
            )
            counts[HOST_RESULTS[kind]] += 1
            res = data.get("res") or {}
            if res.get("changed"):
                counts["changed"] += 1
            if kind in ("runner_on_failed", "runner_on_unreachable") and not data.get(
                "ignore_errors"
            ):
                self.failures.append(
                    redact({"host": host, "task": data.get("task"), "msg": _message(res)})
                )
        elif kind == "runner_item_on_failed" and host:
            # The task's own failure only says "One or more items failed": keep the item's.
            res = data.get("res") or {}
            self.failures.append(
                redact({"host": host, "task": data.get("task"), "msg": _message(res)})
            )
        elif kind == "playbook_on_stats":
            self.stats = redact(
                {k: data.get(k) for k in ("ok", "changed", "failures", "dark", "skipped")}
            )
        if kind in KEPT_EVENTS:
            self._seq += 1
            self.pending.append(
                StoredEvent(
                    seq=self._seq,
                    event=kind,
                    host=host,
                    task=redact_text(data["task"]) if data.get("task") else None,
                    created_at=_created(event),
                    data=_stored_data(data),
                )
            )
        return False  # nothing is written to the artifacts directory

    def on_status(self, status: dict[str, Any], runner_config: Any = None) -> None:
        self.status = status.get("status", self.status)

    def take_events(self) -> list[StoredEvent]:
        events, self.pending = self.pending, []
        return events

    @property
    def tasks_done(self) -> int:
        running = self.status in ("starting", "running") and self.tasks_started
        return self.tasks_started - 1 if running else self.tasks_started

    def progress(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "status": self.status,
            "play": self.play,
            "current_task": self.current_task,
            "tasks_done": self.tasks_done,
            "tasks_expected": self.tasks_expected,
            "hosts": self.hosts,
            "first_task_at": self.first_task_at.isoformat() if self.first_task_at else None,
            "updated_at": datetime.now(UTC).isoformat(),
        }


def _message(res: dict[str, Any]) -> str:
    parts = [res.get(k) for k in ("msg", "stderr", "reason")]
    return "\n".join(str(p) for p in parts if p)[:MAX_RESULT_CHARS]


def _created(event: dict[str, Any]) -> datetime:
    try:
        return datetime.fromisoformat(event["created"]).replace(tzinfo=UTC)
    except (KeyError, ValueError):
        return datetime.now(UTC)


def _stored_data(data: dict[str, Any]) -> dict[str, Any]:
    kept = {
        k: data[k]
        for k in ("play", "task", "task_action", "role", "host", "ignore_errors", "duration")
        if k in data
    }
    if "res" in data:
        res = redact(data["res"])
        text = repr(res)
        kept["res"] = (
            res if len(text) <= MAX_RESULT_CHARS else {"truncated": text[:MAX_RESULT_CHARS]}
        )
    for k in ("ok", "changed", "failures", "dark", "skipped"):
        if k in data:
            kept[k] = data[k]
    return redact(kept)


@dataclass
class RunResult:
    status: str  # successful, failed, canceled, timeout
    rc: int | None
    seconds: float


class _UnsafeText(str):
    """A string Ansible must not template: written as `!unsafe "..."`."""


class _ExtraVarsDumper(yaml.SafeDumper):
    pass


_ExtraVarsDumper.add_representer(
    _UnsafeText, lambda dumper, text: dumper.represent_scalar("!unsafe", str(text), style='"')
)


def _mark_unsafe(value: Any) -> Any:
    if isinstance(value, str):
        return _UnsafeText(value)
    if isinstance(value, Mapping):
        return {str(k): _mark_unsafe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mark_unsafe(v) for v in value]
    return value


def unsafe_extravars_yaml(extravars: Mapping[str, Any]) -> str:
    """Extra variables as YAML for `-e @file`, every string (at any depth) tagged `!unsafe`."""
    return yaml.dump(
        _mark_unsafe(extravars), Dumper=_ExtraVarsDumper, allow_unicode=True, sort_keys=True
    )


# What the playbook run may see of the worker's environment: names, and prefixes of names.
PLAYBOOK_ENV_NAMES = {"HOME", "LANG", "LANGUAGE", "LOGNAME", "PATH", "SHELL", "TERM", "TMPDIR"}
PLAYBOOK_ENV_NAMES |= {"TZ", "USER", "VIRTUAL_ENV", "SSL_CERT_DIR", "SSL_CERT_FILE"}
PLAYBOOK_ENV_PREFIXES = ("ANSIBLE_", "AWX_", "RUNNER_", "LTB_", "LC_", "PYTHON")
PLAYBOOK_ENV_PREFIXES += ("DOCKER_", "OVS_", "LIBVIRT_")
# Never passed: the worker's own connections, and whatever sounds like a secret.
WORKER_ONLY_ENV = {"LTB_DATABASE_URL", "LTB_REDIS_URL"}
# (...KEY_CHECKING and ...KEY_FILE are settings and paths, kept.)
SECRET_ENV_NAME = re.compile(r"PASSW|PASSPHRASE|SECRET|TOKEN|CREDENTIAL|AUTH|KEY$|KEY_ID$", re.I)


def playbook_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The environment of a playbook run (ansible-playbook and every module it starts): only
    what Ansible and LTB's playbooks need of `env`, without the worker's database and Redis
    URLs, secret-sounding variables or values that hold a URL's password."""
    return {
        name: value
        for name, value in env.items()
        if (name in PLAYBOOK_ENV_NAMES or name.startswith(PLAYBOOK_ENV_PREFIXES))
        and name not in WORKER_ONLY_ENV
        and not SECRET_ENV_NAME.search(name)
        and not URL_PASSWORD.search(value)
    }


def make_private_data_dir(
    settings: Settings, job_id: str, lab: str, topology: str, extravars: Mapping[str, Any]
) -> Path:
    directory = settings.jobs_dir / job_id
    inventory = directory / "inventory"
    inventory.mkdir(parents=True, mode=0o700)
    for entry in sorted(settings.hypervisors_inventory.iterdir()):
        if not entry.name.endswith(".lab.yml"):
            (inventory / entry.name).symlink_to(entry.resolve())
    (inventory / f"{lab}.lab.yml").write_text(topology, encoding="utf-8")
    env = directory / "env"
    env.mkdir(mode=0o700)
    (env / "extravars").write_text(unsafe_extravars_yaml(extravars), encoding="utf-8")
    return directory


def run_playbook(
    settings: Settings,
    *,
    job_id: str,
    lab: str,
    topology: str,
    hypervisor: str,
    playbook: str,
    allocation: str | None = None,
    extravars: dict[str, Any],
    observer: RunObserver,
    cancelled: Callable[[], bool],
    on_progress: Callable[[], None],
) -> RunResult:
    """Run `playbooks/<playbook>` on the lab; return when it has ended (or was stopped).
    `extravars` reach the playbook as data, never templated (see the module's doc).
    `allocation`: the lab's tag and subnet from the store (`<tag>/<subnet>`), which the
    inventory plugin then uses instead of a registry file (None: the file's)."""
    directory = make_private_data_dir(settings, job_id, lab, topology, extravars)
    started = time.monotonic()

    def event_handler(event: dict[str, Any]) -> bool:
        kept = observer.on_event(event)
        if event.get("event") in ("playbook_on_task_start", "playbook_on_stats"):
            on_progress()
        return kept

    def status_handler(status: dict[str, Any], runner_config: Any = None) -> None:
        observer.on_status(status)
        on_progress()

    try:
        # ansible_runner.run() in two steps: the runner seeds its environment with the whole
        # of os.environ, filtered here before anything starts.
        run = init_runner(
            private_data_dir=str(directory),
            project_dir=str(ROOT),
            # Relative to playbooks/ (an absolute path is taken as it is, for tests).
            playbook=str(ROOT / "playbooks" / playbook),
            ident="run",
            envvars={
                "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
                # ansible-playbook, and the modules it starts locally, are the venv's.
                "PATH": f"{Path(sys.executable).parent}:/usr/local/sbin:/usr/local/bin:"
                "/usr/sbin:/usr/bin:/sbin:/bin",
                "LTB_HYPERVISOR": hypervisor,
                "ANSIBLE_NOCOLOR": "1",
            }
            | ({"LTB_ALLOCATION": allocation} if allocation else {}),
            settings={"pexpect_timeout": 1, "suppress_ansible_output": True},
            timeout=settings.task_timeout,
            suppress_env_files=True,
            quiet=True,
            event_handler=event_handler,
            status_handler=status_handler,
            cancel_callback=cancelled,
        )
        run.config.env = playbook_environment(run.config.env)
        run.run()
        return RunResult(run.status, run.rc, time.monotonic() - started)
    finally:
        if not settings.keep_runs:
            shutil.rmtree(directory, ignore_errors=True)
