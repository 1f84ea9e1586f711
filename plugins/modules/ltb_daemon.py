#!/usr/bin/python
# LTB module: one daemon of the platform, supervised (roles/platform_daemon).
from __future__ import annotations

DOCUMENTATION = r"""
module: ltb_daemon
short_description: One daemon of the platform, its files written and its supervisor told, in one run
description:
  - The roles' daemons (portal, workers, scheduler, bastion, exporters, Prometheus, nginx) are
    supervised by systemd or supervisord (roles/platform_daemon). This module does in one
    module run what were six tasks per daemon, so that a run of site.yml that changes nothing
    costs one module run per daemon.
  - In order, it makes O(directories), stops a daemon started the old way (O(old_pid_file),
    start-stop-daemon) when O(supervised_by) does not exist yet, writes O(files) that differ
    (atomically, with their mode), and with O(supervisor=supervisord) applies a new or changed
    program (C(supervisorctl update)), starts the daemon when it is not running, restarts it
    when O(restart) is true, or sends it SIGHUP when O(reload) is true; a daemon whose program
    changed was restarted by the update already.
  - With O(supervisor=systemd) or O(supervisor=none) it only writes; the role tells systemd
    (ansible.builtin.systemd_service) from RV(changed_files).
  - Check mode reports what would change and does nothing. File contents may hold secrets, so
    there is no diff; RV(changed_files) names the files.
options:
  name:
    description: The daemon's unit or program name.
    type: str
    required: true
  supervisor:
    description: Who supervises it; C(none) only writes the files (tests).
    type: str
    choices: [supervisord, systemd, none]
    required: true
  directories:
    description: Directories that must exist, with their mode.
    type: list
    elements: dict
    default: []
    suboptions:
      path: {description: Absolute path., type: path, required: true}
      mode: {description: Octal mode., type: str, default: "0755"}
  files:
    description: Files written with this content and mode (unit, environment file, program).
    type: list
    elements: dict
    default: []
    suboptions:
      path: {description: Absolute path., type: path, required: true}
      content: {description: The whole content., type: str, required: true}
      mode: {description: Octal mode., type: str, default: "0644"}
  program_file:
    description: The file among O(files) that is supervisord's program (O(supervisor=supervisord)).
    type: path
  supervised_by:
    description: The unit or program file whose absence means the daemon was never supervised.
    type: path
  old_pid_file:
    description: Pid file of the daemon started the old way, stopped once when it is handed over.
    type: path
  stop_seconds:
    description: Seconds the old daemon may take to stop after SIGTERM before SIGKILL.
    type: int
    default: 30
  restart:
    description: Restart it (its code changed).
    type: bool
    default: false
  reload:
    description: Send it SIGHUP (its configuration changed), unless it was (re)started now.
    type: bool
    default: false
  supervisor_config:
    description: supervisord's configuration (for supervisorctl).
    type: path
    default: /etc/supervisor/supervisord.conf
"""

RETURN = r"""
changed_files:
  description: The files of O(files) that were (or in check mode would be) written.
  type: list
  elements: str
  returned: always
actions:
  description: What was (or would be) done, in order, e.g. C(handed over), C(update), C(start).
  type: list
  elements: str
  returned: always
state:
  description:
    - supervisord's state of the daemon before it was started or restarted here (C(RUNNING),
      C(STOPPED)...), C(none) without supervisord.
  type: str
  returned: always
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.ltb_files import ensure_directory, ensure_file


def old_daemon_runs(pid_file: str) -> bool:
    """A process of the pid in `pid_file` runs (start-stop-daemon would stop it)."""
    try:
        with open(pid_file) as handle:
            pid = int(handle.read().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return False
    return True


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "supervisor": {
                "type": "str",
                "choices": ["supervisord", "systemd", "none"],
                "required": True,
            },
            "directories": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "path": {"type": "path", "required": True},
                    "mode": {"type": "str", "default": "0755"},
                },
            },
            "files": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "path": {"type": "path", "required": True},
                    "content": {"type": "str", "required": True, "no_log": True},
                    "mode": {"type": "str", "default": "0644"},
                },
            },
            "program_file": {"type": "path"},
            "supervised_by": {"type": "path"},
            "old_pid_file": {"type": "path"},
            "stop_seconds": {"type": "int", "default": 30},
            "restart": {"type": "bool", "default": False},
            "reload": {"type": "bool", "default": False},
            "supervisor_config": {"type": "path", "default": "/etc/supervisor/supervisord.conf"},
        },
        required_if=[("supervisor", "supervisord", ["program_file"])],
        supports_check_mode=True,
    )
    p = module.params
    check = module.check_mode
    name = p["name"]
    actions: list[str] = []
    changed_files: list[str] = []

    def run(argv: list[str], ok: tuple[int, ...] = (0,)) -> tuple[int, str]:
        rc, out, err = module.run_command(argv)
        if rc not in ok:
            module.fail_json(
                msg=f"{name}: {' '.join(argv)} failed (rc {rc}): {(err or out).strip()}",
                changed_files=changed_files,
                actions=actions,
            )
        return rc, out

    for directory in p["directories"]:
        if ensure_directory(directory["path"], directory["mode"], check):
            actions.append(f"directory {directory['path']}")

    # The roles started these daemons with start-stop-daemon before: stop that one once, or
    # the supervised one would find its port taken.
    handing_over = (
        p["old_pid_file"]
        and p["supervised_by"]
        and not os.path.exists(p["supervised_by"])
        and old_daemon_runs(p["old_pid_file"])
    )
    if handing_over:
        actions.append("handed over")
        if not check:
            stop_after = f"TERM/{p['stop_seconds']}/KILL/5"
            # 1: it ended meanwhile.
            stop = ["start-stop-daemon", "--stop", "--pidfile", p["old_pid_file"]]
            run([*stop, "--remove-pidfile", "--retry", stop_after], ok=(0, 1))

    for wanted in p["files"]:
        changed, _ = ensure_file(wanted["path"], wanted["content"], wanted["mode"], check)
        if changed:
            changed_files.append(wanted["path"])

    state = "none"
    if p["supervisor"] == "supervisord":
        ctl = ["supervisorctl", "--configuration", p["supervisor_config"]]
        program_changed = p["program_file"] in changed_files
        if program_changed:
            # `update` starts a new program and restarts one whose settings changed, only it.
            actions.append("update")
            if not check:
                run([*ctl, "update", name])
        # 3: not running; 4: no such program (check mode, before its file is written).
        _, out = run([*ctl, "status", name], ok=(0, 3, 4))
        words = out.split()
        state = words[1] if len(words) > 1 and words[0] == name else "none"
        if state not in ("RUNNING", "STARTING"):
            actions.append("start")
            if not check:
                run([*ctl, "start", name])
        elif p["restart"] and not program_changed:
            actions.append("restart")
            if not check:
                run([*ctl, "restart", name])
        elif p["reload"] and not program_changed and state == "RUNNING":
            actions.append("reload")
            if not check:
                run([*ctl, "signal", "HUP", name])
        # With `update` and `start` both listed, update started it and start found it
        # running (or started what update could not): either way it runs now.

    module.exit_json(
        changed=bool(actions or changed_files),
        changed_files=changed_files,
        actions=actions,
        state=state,
    )


if __name__ == "__main__":
    main()
