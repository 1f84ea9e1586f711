"""On a host whose service manager is systemd, the platform_* roles start Debian's own units
(ansible.builtin.systemd_service) instead of the daemons. This machine has no systemd as
init, so those tasks never run here: this checks what can be checked without it, that every
unit the roles name is installed by their packages and passes `systemd-analyze verify`, and
that the settings the roles write to /etc/default/ are the ones those units read."""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).parents[2] / "roles"
UNIT_DIR = Path("/lib/systemd/system")
SYSTEMD_MODULES = ("ansible.builtin.systemd_service", "ansible.builtin.systemd")
PLAIN_VARIABLE = re.compile(r"\{\{\s*(\w+)\s*\}\}")

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


def tasks_of(node) -> Iterator[dict]:
    """Every task of a task file, also those inside blocks."""
    if isinstance(node, list):
        for child in node:
            yield from tasks_of(child)
    elif isinstance(node, dict):
        yield node
        for key in ("block", "rescue", "always"):
            yield from tasks_of(node.get(key))


def role_files(roles: Path) -> Iterator[tuple[Path, Path]]:
    """(role directory, task or handler file) of every platform role but platform_daemon,
    whose units are LTB's own (rendered and verified below)."""
    for role in sorted(roles.glob("platform_*")):
        if role.name == "platform_daemon":
            continue
        for path in sorted([*role.glob("tasks/*.yml"), *role.glob("handlers/*.yml")]):
            yield role, path


def resolve(value, defaults: dict, where: str, item=None):
    """A plain value, `{{ item }}` or `{{ a_role_default }}`; anything else is refused, so a
    role that builds a unit name otherwise makes this test say so instead of skip it."""
    if not isinstance(value, str) or "{{" not in value:
        return value
    match = PLAIN_VARIABLE.fullmatch(value.strip())
    if match is None:
        raise AssertionError(f"{where}: cannot resolve {value!r}; teach this test how")
    name = match[1]
    if name == "item":
        return item
    assert name in defaults, f"{where}: {name} is no default of the role"
    return resolve(defaults[name], defaults, where)


def units_named_by_roles(roles: Path = ROLES) -> dict[str, list[str]]:
    """unit -> the task files (role/file: task) that start, restart or reload it."""
    units: dict[str, list[str]] = {}
    for role, path in role_files(roles):
        defaults = yaml.safe_load((role / "defaults/main.yml").read_text()) or {}
        for task in tasks_of(yaml.safe_load(path.read_text())):
            module = next((task[m] for m in SYSTEMD_MODULES if m in task), None)
            if module is None:
                continue
            where = f"{path.relative_to(roles)}: {task.get('name')}"
            loop = resolve(task.get("loop", [None]), defaults, where)
            for item in loop:
                unit = resolve(module["name"], defaults, where, item)
                units.setdefault(unit, []).append(where)
    return units


def unit_file(unit: str) -> Path:
    return UNIT_DIR / (unit if "." in unit else f"{unit}.service")


def test_every_unit_the_roles_start_under_systemd_is_installed_and_verifies():
    units = units_named_by_roles()
    # What the roles start through systemd today (a sanity floor: the parser found them).
    assert {"docker", "openvswitch-switch", "postgresql", "redis-server", "libvirtd"} <= set(
        units
    ), units
    missing = {unit: where for unit, where in units.items() if not unit_file(unit).is_file()}
    assert not missing, f"units named by the roles but not installed: {missing}"
    verify = subprocess.run(
        ["systemd-analyze", "verify", *(str(unit_file(unit)) for unit in sorted(units))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_the_settings_roles_write_to_etc_default_are_read_by_their_units():
    checked = 0
    for _role, path in role_files(ROLES):
        for task in tasks_of(yaml.safe_load(path.read_text())):
            copy = task.get("ansible.builtin.copy") or {}
            dest = str(copy.get("dest", ""))
            if not dest.startswith("/etc/default/"):
                continue
            unit_text = unit_file(Path(dest).name).read_text()
            assert re.search(rf"^EnvironmentFile=-?{re.escape(dest)}$", unit_text, re.M), (
                f"{path}: {unit_file(Path(dest).name)} does not read {dest}"
            )
            for variable in re.findall(r"^(\w+)=", str(copy["content"]), re.M):
                assert re.search(rf"\$\{{?{variable}\b", unit_text), (
                    f"{path}: {dest} sets {variable}, which {unit_file(Path(dest).name)} "
                    "does not use"
                )
                checked += 1
    assert checked >= 2  # Prometheus and the node exporter


# The platform's own daemons (roles/platform_daemon): a unit of LTB's where systemd runs, a
# program of supervisord elsewhere. These have LTB's units; nginx, Prometheus and the node
# exporter use Debian's under systemd (checked above) and LTB's programs without it.
LTB_UNITS = {
    "ltb-portal",
    "ltb-worker-1",
    "ltb-worker-2",
    "ltb-scheduler",
    "ltb-bastion",
    "ltb-lab-exporter",
}
LTB_PROGRAMS = LTB_UNITS | {"ltb-nginx", "ltb-node-exporter", "ltb-prometheus"}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    """Every daemon's unit, environment file and program, rendered by the roles themselves
    (tests/platform/render_daemons.yml) into a directory of the test's."""
    out = tmp_path_factory.mktemp("daemons")
    extra = {
        "platform_daemon_mode": "unit",
        "platform_daemon_unit_dir": str(out / "units"),
        "platform_daemon_env_dir": str(out / "env"),
        "platform_daemon_supervisor_dir": str(out / "programs"),
        # The roles run from their playbooks in playbooks/: the repository is its parent.
        "platform_portal_root": str(ROLES.parent),
        "platform_jobs_root": str(ROLES.parent),
    }
    (out / "programs").mkdir()
    (out / "units").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["ANSIBLE_CONFIG"] = str(ROLES.parent / "ansible.cfg")
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("ansible-playbook")),
            str(Path(__file__).with_name("render_daemons.yml")),
            "-e",
            json.dumps(extra),
        ],
        cwd=ROLES.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    return out


def exec_start(unit_text: str) -> list[str]:
    """ExecStart='s words, as systemd splits them (double quotes, backslash escapes)."""
    line = re.search(r"^ExecStart=(.*)$", unit_text, re.M)[1]
    return [word.replace("$$", "$").replace("%%", "%") for word in shlex.split(line)]


def program_command(program_text: str) -> list[str]:
    """The program's command, as supervisord expands ('%%') and splits it."""
    line = re.search(r"^command=(.*)$", program_text, re.M)[1]
    return shlex.split(line.replace("%%", "%"))


def test_the_units_of_ltbs_daemons_verify_restart_on_failure_and_start_at_boot(rendered):
    units = {path.stem: path for path in (rendered / "units").glob("*.service")}
    assert set(units) >= LTB_UNITS, sorted(units)
    for name in LTB_UNITS:
        text = units[name].read_text()
        assert re.search(r"^Restart=on-failure$", text, re.M), f"{name}: {text}"
        assert re.search(r"^WantedBy=multi-user\.target$", text, re.M), f"{name}: {text}"
        env_file = re.search(r"^EnvironmentFile=(.*)$", text, re.M)[1]
        assert Path(env_file).stat().st_mode & 0o077 == 0, f"{env_file}: readable by others"
    verify = subprocess.run(
        ["systemd-analyze", "verify", *(str(units[name]) for name in sorted(LTB_UNITS))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_a_daemon_runs_the_same_command_with_the_same_settings_under_systemd_and_supervisord(
    rendered,
):
    for name in LTB_UNITS:
        unit = (rendered / "units" / f"{name}.service").read_text()
        program = (rendered / "programs" / f"{name}.conf").read_text()
        assert exec_start(unit) == program_command(program), name
        env_file = Path(re.search(r"^EnvironmentFile=(.*)$", unit, re.M)[1]).read_text()
        unit_settings = dict(re.findall(r'^(\w+)="(.*)"$', env_file, re.M))
        environment = re.search(r"^environment=(.*)$", program, re.M)
        pairs = re.findall(r'(\w+)="([^"]*)"', environment[1] if environment else "")
        program_settings = {k: v.replace("%%", "%") for k, v in pairs}
        assert unit_settings == program_settings, name
        for setting in ("User", "WorkingDirectory"):
            unit_value = re.search(rf"^{setting}=(.*)$", unit, re.M)[1]
            key = {"User": "user", "WorkingDirectory": "directory"}[setting]
            assert re.search(rf"^{key}={re.escape(unit_value)}$", program, re.M), (name, setting)
    # The portal, the workers and the scheduler get the settings the roles give them.
    portal = (rendered / "env" / "ltb-portal.env").read_text()
    assert re.search(r'^LTB_DATABASE_URL="postgresql', portal, re.M), portal


def test_every_program_of_supervisord_restarts_a_daemon_that_dies(rendered):
    programs = {path.stem: path.read_text() for path in (rendered / "programs").glob("*.conf")}
    assert set(programs) >= LTB_PROGRAMS, sorted(programs)
    parser = configparser.RawConfigParser()
    for name in LTB_PROGRAMS:
        parser.read_string(programs[name], source=name)
        section = parser[f"program:{name}"]
        assert section["autorestart"] == "unexpected" and section["autostart"] == "true", name
        assert Path(program_command(programs[name])[0]).is_file(), name
        assert section["stdout_logfile"].startswith("/var/log/"), name
