"""site.yml's systemd path, run for real (issue 14): on a host whose PID 1 is systemd (the
SYSTEMD variant of tests/separate_host/host.py, a Debian 12 container), the hypervisor's
exporters run as enabled units (Debian's node exporter, LTB's lab exporter through
roles/platform_daemon), systemd starts a killed daemon again, a second site.yml run and
--check change nothing, a daemon gets its arguments and settings as given, `absent` removes
its unit; Docker, Open vSwitch and libvirt (the hypervisor play) and the bastion (a controller
daemon) run as units and converge, and every unit runs again after a reboot.

This machine has no systemd as init, so the rest of the suite checks units only as files
(tests/platform/test_systemd_units.py). Opt-in (LTB_TEST_SYSTEMD_HOST=1): the host downloads
the node exporter, and the image build takes over a minute when it is not cached. The tests
of this module run in order on one host (about 3.5 minutes); timings are printed (pytest -s).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.multihost.conftest import BIN, ROOT, Run
from tests.separate_host.host import SYSTEMD, SeparateHost

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        os.environ.get("LTB_TEST_SYSTEMD_HOST") != "1",
        reason="systemd host: downloads packages, builds an image; LTB_TEST_SYSTEMD_HOST=1",
    ),
]

HOST = SeparateHost("sj1", 3, SYSTEMD)
TIMES: dict[str, float] = {}
EXPORTERS = ("prometheus-node-exporter", "ltb-lab-exporter")

# A daemon of the test's through roles/platform_daemon: it writes the arguments and settings
# it got, and a line for every SIGHUP, to files in /run. Its words hold what the unit must
# escape for systemd: '%' (specifiers), '$' (variables), double quotes and backslashes.
ECHO_FILE = "/run/ltb-sj-echo.json"
HUP_FILE = "/run/ltb-sj-echo.hup"
ECHO_SCRIPT = (  # one line: a line break cannot be written in a unit (the role refuses it)
    "import json, os, signal, sys, time; "
    f"signal.signal(signal.SIGHUP, lambda *_: open('{HUP_FILE}', 'a').write('hup\\n')); "
    "settings = {k: v for k, v in os.environ.items() if k.startswith('SJ_')}; "
    f"json.dump({{'argv': sys.argv[1:], 'settings': settings}}, open('{ECHO_FILE}', 'w')); "
    "time.sleep(1e8)"  # resumed after a SIGHUP's handler
)
ECHO = {
    "name": "ltb-sj-echo",
    "description": "LTB test daemon (tests/separate_host/test_systemd_host.py)",
    "argv": ["/usr/bin/python3", "-c", ECHO_SCRIPT, "100% sure", "$HOME ${PATH}", 'a "b" \\ c'],
    "environment": {
        "SJ_PLAIN": "plain",
        "SJ_ODD": "50% of $HOME or ${PATH}, a \\ and 'single quotes'",
        "SJ_SPACES": "  two  spaces  ",
    },
    "log": "/var/log/ltb/ltb-sj-echo.log",
    "reload": True,
    "stop_seconds": 5,
}
# The role's own entry points, run on the host alone.
DAEMON_PLAYBOOK = """\
- name: The test's daemon is as asked (tests/separate_host/test_systemd_host.py)
  hosts: hv-sj1
  gather_facts: false
  tasks:
    - name: The daemon runs
      ansible.builtin.include_role:
        name: platform_daemon
      vars:
        platform_daemon_service: "{{ sj_daemon }}"
        platform_daemon_reload: "{{ sj_reload }}"
      when: sj_state == 'present'
    - name: The daemon is gone
      ansible.builtin.include_role:
        name: platform_daemon
        tasks_from: absent
      vars:
        platform_daemon_service: "{{ sj_daemon }}"
      when: sj_state == 'absent'
"""


@pytest.fixture(scope="module")
def host():
    HOST.down()  # what an interrupted run left
    TIMES.update(HOST.up())
    try:
        yield HOST
    finally:
        HOST.down()
        print(f"systemd host times (s): {json.dumps({k: round(v, 1) for k, v in TIMES.items()})}")


@pytest.fixture(scope="module")
def inventory(host, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("inventory") / "systemd-host.yaml"
    path.write_text(yaml.safe_dump({"hypervisors": {"hosts": {host.name: host.inventory_host()}}}))
    return path


def ansible_playbook(*argv: str | Path) -> Run:
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
    }
    start = time.monotonic()
    process = subprocess.run(
        [str(BIN / "ansible-playbook"), *map(str, argv)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    return Run(process.returncode, process.stdout, process.stderr, time.monotonic() - start)


def site(inventory: Path, *extra: str) -> Run:
    """site.yml's exporters on the systemd host only: the metrics plays, --limit to it."""
    return ansible_playbook(
        "-i", "inventory/", "-i", inventory, "playbooks/site.yml",
        "--tags", "metrics", "--limit", HOST.name, *extra,
    )  # fmt: skip


def daemon(
    inventory: Path,
    tmp_path: Path,
    state: str,
    reload: bool = False,
    service: dict = ECHO,
    check: bool = False,
) -> Run:
    playbook = tmp_path / "daemon.yml"
    playbook.write_text(DAEMON_PLAYBOOK)
    # The daemon as a file of extra vars: data, never templated from the command line.
    extra = tmp_path / "daemon.json"
    extra.write_text(json.dumps({"sj_daemon": service, "sj_state": state, "sj_reload": reload}))
    options = ["--check"] if check else []
    return ansible_playbook("-i", inventory, playbook, "-e", f"@{extra}", *options)


def changed_tasks(run: Run) -> list[str]:
    return [
        task["task"]["name"]
        for play in json.loads(run.stdout)["plays"]
        for task in play["tasks"]
        if task["hosts"].get(HOST.name, {}).get("changed")
    ]


def systemctl(*argv: str) -> str:
    done = subprocess.run(
        ["docker", "exec", HOST.container, "systemctl", *argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return done.stdout.strip()


def main_pid(unit: str) -> int:
    return int(systemctl("show", "--property=MainPID", "--value", unit))


@pytest.fixture(scope="module")
def first_site_run(inventory) -> Run:
    run = site(inventory)
    TIMES["site_first"] = run.seconds
    assert run.returncode == 0, run.failures()
    return run


def test_systemd_is_the_hosts_init_and_ansible_sees_it(host):
    assert host.exec("cat", "/proc/1/comm").strip() == "systemd"
    assert systemctl("is-system-running") in ("running", "degraded")


def test_site_runs_the_exporters_as_active_units_enabled_at_boot(first_site_run):
    assert systemctl("is-active", *EXPORTERS).split() == ["active", "active"]
    assert systemctl("is-enabled", *EXPORTERS).split() == ["enabled", "enabled"]
    # Not supervisord's programs: no supervisord on a host with systemd.
    assert systemctl("is-active", "supervisor") != "active"
    for port in (9100, 9843):
        with urllib.request.urlopen(f"http://{HOST.address}:{port}/metrics", timeout=10) as answer:
            assert answer.status == 200


@pytest.mark.parametrize(
    ("signal", "restarts"),
    # KILL: a crash or the OOM killer. TERM from outside (not `systemctl stop`): supervisord
    # restarts it, and so must systemd (Restart=on-failure alone took it as a clean end).
    [("KILL", "1"), ("TERM", "2")],
)
def test_systemd_starts_a_killed_daemon_again(first_site_run, signal, restarts):
    before = main_pid("ltb-lab-exporter")
    assert before > 0
    HOST.exec("kill", f"-{signal}", str(before))
    deadline = time.monotonic() + 20  # RestartSec=2
    while not (main_pid("ltb-lab-exporter") not in (0, before) and systemctl(
        "is-active", "ltb-lab-exporter"
    ) == "active"):  # fmt: skip
        assert time.monotonic() < deadline, systemctl("status", "ltb-lab-exporter")
        time.sleep(0.3)
    assert systemctl("show", "--property=NRestarts", "--value", "ltb-lab-exporter") == restarts


def test_a_second_site_run_changes_nothing_nor_does_check_mode(first_site_run, inventory):
    again = site(inventory)
    TIMES["site_second"] = again.seconds
    assert again.returncode == 0, again.failures()
    assert changed_tasks(again) == []
    checked = site(inventory, "--check")
    TIMES["site_check"] = checked.seconds
    assert checked.returncode == 0, checked.failures()
    assert changed_tasks(checked) == []


def test_check_mode_of_a_new_daemon_reports_the_change_and_writes_nothing(
    host, inventory, tmp_path
):
    # Its unit is not there yet: systemd cannot be asked about it (it failed, "Could not find
    # the requested service"), and writing it is the change to report.
    checked = daemon(inventory, tmp_path, "present", check=True)
    assert checked.returncode == 0, checked.failures()
    assert changed_tasks(checked), "nothing would change"
    assert systemctl("show", "--property=LoadState", "--value", ECHO["name"]) == "not-found"
    assert HOST.exec("sh", "-c", "ls /etc/systemd/system/ltb-sj-echo.* 2>/dev/null || true") == ""


@pytest.fixture(scope="module")
def echo_daemon(host, inventory, tmp_path_factory) -> Run:
    run = daemon(inventory, tmp_path_factory.mktemp("echo"), "present")
    TIMES["daemon_present"] = run.seconds
    assert run.returncode == 0, run.failures()
    return run


def echoed() -> dict:
    deadline = time.monotonic() + 10
    while True:
        try:
            return json.loads(HOST.exec("cat", ECHO_FILE))
        except (RuntimeError, json.JSONDecodeError):
            assert time.monotonic() < deadline, systemctl("status", ECHO["name"])
            time.sleep(0.2)


def test_a_daemon_gets_its_arguments_and_settings_as_given(echo_daemon):
    assert systemctl("is-active", ECHO["name"]) == "active"
    assert echoed() == {"argv": ECHO["argv"][3:], "settings": ECHO["environment"]}
    assert HOST.exec("stat", "-c", "%a", "/etc/ltb/daemons/ltb-sj-echo.env").strip() == "600"


def test_the_daemon_again_changes_nothing_and_reload_sends_it_sighup(
    echo_daemon, inventory, tmp_path
):
    pid = main_pid(ECHO["name"])
    again = daemon(inventory, tmp_path, "present")
    assert again.returncode == 0, again.failures()
    assert changed_tasks(again) == []
    checked = daemon(inventory, tmp_path, "present", check=True)
    assert checked.returncode == 0, checked.failures()
    assert changed_tasks(checked) == []
    reloaded = daemon(inventory, tmp_path, "present", reload=True)
    assert reloaded.returncode == 0, reloaded.failures()
    deadline = time.monotonic() + 10
    while HOST.exec("sh", "-c", f"cat {HUP_FILE} 2>/dev/null || true").split() != ["hup"]:
        assert time.monotonic() < deadline, f"{ECHO['name']} got no SIGHUP"
        time.sleep(0.2)
    assert main_pid(ECHO["name"]) == pid  # reloaded, not restarted


def test_changed_settings_restart_the_daemon_with_them(echo_daemon, inventory, tmp_path):
    pid = main_pid(ECHO["name"])
    HOST.exec("rm", "-f", ECHO_FILE)
    changed = {**ECHO, "environment": {**ECHO["environment"], "SJ_PLAIN": "changed"}}
    run = daemon(inventory, tmp_path, "present", service=changed)
    assert run.returncode == 0, run.failures()
    assert echoed()["settings"]["SJ_PLAIN"] == "changed"
    assert main_pid(ECHO["name"]) not in (0, pid)


def test_absent_stops_the_daemon_and_systemd_forgets_its_unit(echo_daemon, inventory, tmp_path):
    pid = main_pid(ECHO["name"])
    removed = daemon(inventory, tmp_path, "absent")
    assert removed.returncode == 0, removed.failures()
    assert systemctl("is-active", ECHO["name"]) == "inactive"
    assert HOST.exec("sh", "-c", f"test -e /proc/{pid} && echo runs || true").strip() == ""
    listed = systemctl("list-unit-files", "--no-legend", f"{ECHO['name']}.service")
    assert listed == "", listed
    assert systemctl("show", "--property=LoadState", "--value", ECHO["name"]) == "not-found"
    leftovers = "ls /etc/systemd/system/ltb-sj-echo.service /etc/ltb/daemons/ltb-sj-echo.env"
    assert HOST.exec("sh", "-c", f"{leftovers} 2>/dev/null || true").strip() == ""
    again = daemon(inventory, tmp_path, "absent")
    assert again.returncode == 0, again.failures()
    assert changed_tasks(again) == []


def test_an_argument_with_a_line_break_is_refused_before_its_unit_is_written(
    host, inventory, tmp_path
):
    # systemd refuses such a unit as a whole ("Unbalanced quoting"), after it was written.
    broken = {**ECHO, "name": "ltb-sj-broken", "argv": ["/usr/bin/python3", "-c", "1\n2"]}
    refused = daemon(inventory, tmp_path, "present", service=broken)
    assert refused.returncode != 0
    assert 'ltb-sj-broken: arguments "1\\n2" hold a line break' in refused.failures()
    assert systemctl("show", "--property=LoadState", "--value", "ltb-sj-broken") == "not-found"
    assert HOST.exec("sh", "-c", "ls /etc/systemd/system/ltb-sj-broken.* 2>/dev/null || true") == ""


def hypervisor_play(tmp_path: Path) -> Path:
    """site.yml's first play (the hypervisors' packages, Docker, Open vSwitch, libvirt, key,
    capture) for the host alone: site.yml itself would also build the lab images there."""
    play = yaml.safe_load((ROOT / "playbooks/site.yml").read_text())[0]
    assert play["hosts"] == "hypervisors" and play["roles"], play
    path = tmp_path / "hypervisor.yml"
    path.write_text(yaml.safe_dump([{**play, "hosts": HOST.name}], sort_keys=False))
    return path


UNITS = ("docker", "containerd", "openvswitch-switch", "ovs-vswitchd", "libvirtd", "virtlogd")


def test_site_runs_docker_ovs_and_libvirt_as_debians_units_and_converges(host, inventory, tmp_path):
    playbook = hypervisor_play(tmp_path)
    first = ansible_playbook("-i", "inventory/", "-i", inventory, playbook, "--limit", HOST.name)
    TIMES["hypervisor_play_first"] = first.seconds
    assert first.returncode == 0, first.failures()
    assert systemctl("is-active", *UNITS).split() == ["active"] * len(UNITS)
    assert (
        systemctl("is-enabled", "docker", "openvswitch-switch", "libvirtd").split()
        == ["enabled"] * 3
    )
    assert HOST.exec("docker", "info", "--format", "{{.Driver}}").strip() == "overlay2"
    HOST.exec("ovs-vsctl", "show")
    HOST.exec("virsh", "-c", "qemu:///system", "version")
    again = ansible_playbook("-i", "inventory/", "-i", inventory, playbook, "--limit", HOST.name)
    TIMES["hypervisor_play_second"] = again.seconds
    assert again.returncode == 0, again.failures()
    assert changed_tasks(again) == []


def test_the_bastion_a_controller_daemon_runs_as_an_ltb_unit_and_converges(host, tmp_path):
    # The host in group controller too, for the bastion's play alone (--tags bastion): an
    # sshd of its own on port 2222 through platform_daemon, with no portal behind it.
    inventory = tmp_path / "controller.yaml"
    inventory.write_text(
        yaml.safe_dump(
            {
                "hypervisors": {"hosts": {host.name: host.inventory_host()}},
                "controller": {"hosts": {host.name: {}}},
            }
        )
    )
    argv = ["-i", "inventory/", "-i", inventory, "playbooks/site.yml", "--tags", "bastion"]
    first = ansible_playbook(*argv, "--limit", host.name)
    TIMES["bastion_first"] = first.seconds
    assert first.returncode == 0, first.failures()
    assert systemctl("is-active", "ltb-bastion") == "active"
    assert systemctl("is-enabled", "ltb-bastion") == "enabled"
    with socket.create_connection((str(host.address), 2222), timeout=10) as connection:
        assert connection.recv(64).startswith(b"SSH-2.0-")
    again = ansible_playbook(*argv, "--limit", host.name)
    assert again.returncode == 0, again.failures()
    assert changed_tasks(again) == []


def test_after_a_reboot_every_unit_runs_again(host):
    # Enabled units (WantedBy=multi-user.target) start at boot: nothing runs site.yml again.
    TIMES["reboot"] = host.reboot()
    # Debian starts virtlogd on demand after a boot (its socket listens; no [Install] of its own).
    units = (*(u for u in UNITS if u != "virtlogd"), "virtlogd.socket", *EXPORTERS, "ltb-bastion")
    assert systemctl("is-active", *units).split() == ["active"] * len(units)
    for port in (9100, 9843):
        with urllib.request.urlopen(f"http://{HOST.address}:{port}/metrics", timeout=10) as answer:
            assert answer.status == 200
