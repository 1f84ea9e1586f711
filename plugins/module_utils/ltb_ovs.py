# LTB module_utils: Open vSwitch reads and transactions for the modules that run on a
# hypervisor. Standard library only: Ansible ships this file to the hypervisor with each
# module that imports it, and Debian's python3 runs it there.
"""Open vSwitch as the LTB modules use it: JSON reads of the database (one `ovs-vsctl`
call per read, whatever the number of rows) and changes made in one transaction."""

from __future__ import annotations

import json
import os
import subprocess


class OvsError(RuntimeError):
    """ovs-vsctl refused; the message has its words."""


def vsctl(*args, timeout=30):
    """Run `ovs-vsctl ARGS` and return its output; raise OvsError naming the command."""
    done = subprocess.run(
        ["ovs-vsctl", f"--timeout={timeout}", *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        shown = " ".join(args[:6]) + (" ..." if len(args) > 6 else "")
        raise OvsError(f"ovs-vsctl {shown}: {done.stderr.strip()}")
    return done.stdout


def cell(value):
    """An OVSDB JSON cell as Python: ["set", []] is None, a set of values a list,
    ["map", [[k, v]...]] a dict, ["uuid", x] the uuid."""
    if isinstance(value, list) and len(value) == 2:
        kind, content = value
        if kind == "set":
            return [cell(item) for item in content] or None
        if kind == "map":
            return {key: cell(item) for key, item in content}
        if kind in ("uuid", "named-uuid"):
            return content
    return value


def rows(table, columns, *conditions, record_names=None):
    """Rows of `table` (dicts of `columns`): all rows matching `conditions` (`find`), or the
    rows named in `record_names` (`list`, which fails for a missing one)."""
    wanted = ",".join(columns)
    if record_names is not None:
        if not record_names:
            return []
        args = ["--format=json", f"--columns={wanted}", "list", table, *record_names]
    else:
        args = ["--format=json", f"--columns={wanted}", "find", table, *conditions]
    data = json.loads(vsctl(*args))
    return [
        {name: cell(value) for name, value in zip(data["headings"], row, strict=True)}
        for row in data["data"]
    ]


def bridge_ports(bridge):
    """The ports of `bridge` with their tag and external_ids: {name: (tag, ids)}; {} when
    the bridge does not exist."""
    if not vsctl("--if-exists", "get", "Bridge", bridge, "name").strip():
        return {}
    names = vsctl("list-ports", bridge).split()
    found = rows("Port", ("name", "tag", "external_ids"), record_names=names)
    return {row["name"]: (row["tag"], row["external_ids"] or {}) for row in found}


def bridge_owner(bridge):
    """The lab that owns `bridge` (its external_ids:ltb-lab), '' when none or no bridge."""
    return vsctl("--if-exists", "get", "Bridge", bridge, "external_ids:ltb-lab").strip().strip('"')


def transaction(*commands):
    """Run ovs-vsctl commands (each a list of words) in one transaction."""
    args = []
    for command in commands:
        args += ["--", *command]
    if args:
        vsctl(*args)


def interface_exists(name):
    return os.path.exists(os.path.join("/sys/class/net", name))
