"""On a host whose service manager is systemd, the platform_* roles start Debian's own units
(ansible.builtin.systemd_service) instead of the daemons. This machine has no systemd as
init, so those tasks never run here: this checks what can be checked without it, that every
unit the roles name is installed by their packages and passes `systemd-analyze verify`, and
that the settings the roles write to /etc/default/ are the ones those units read."""

from __future__ import annotations

import re
import shutil
import subprocess
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
    """(role directory, task or handler file) of every platform role."""
    for role in sorted(roles.glob("platform_*")):
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
