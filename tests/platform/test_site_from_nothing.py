"""playbooks/site.yml from nothing: every service of the platform is stopped the way an
operator stops it (and /run/ltb emptied, as a reboot empties /run), one run of site.yml (the
command `make up` runs) starts them all, each answers (through nginx where nginx serves it,
directly otherwise), and a second run changes nothing.

These tests run first in a session (tests/platform/conftest.py) and leave the platform
running for the tests after them. They refuse to begin while lab nodes run: stopping Docker
and libvirt would stop those nodes."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import docker
import pytest
import requests
import yaml
from redis import Redis
from rq import Queue
from sqlalchemy import create_engine, text

ROOT = Path(__file__).parents[2]
BIN = Path(sys.executable).parent
SITE = "https://127.0.0.1"
CERTIFICATE = "/etc/ltb/tls/ltb.crt"
ADMIN_PASSWORD = Path("/var/lib/ltb/portal/admin_password")
# Pid files of the platform's daemons: dockerd without systemd, and those of the supervised
# daemons that write one (gunicorn's master, the bastion's sshd).
RUN_DIR = Path("/run/ltb")
# The roles' own way to stop one of those daemons.
STOP_RETRY = "TERM/30/KILL/5"
# Without systemd, supervisord supervises the platform's own daemons (roles/platform_daemon).
SUPERVISOR_PID_FILE = Path("/run/supervisord.pid")
# jobs.settings: the control queue of the default LTB_QUEUE (the role sets none).
CONTROL_QUEUE = "ltb-control"
LIBVIRT_URI = "qemu:///system"
# Debian's units that the roles start under systemd (test_systemd_units.py checks that they
# exist), sockets before their services so that no connection starts a service again.
SYSTEMD_UNITS = [
    "nginx",
    "prometheus",
    "prometheus-node-exporter",
    "redis-server",
    "postgresql",
    "libvirtd.socket",
    "libvirtd-ro.socket",
    "libvirtd-admin.socket",
    "libvirtd",
    "virtlogd.socket",
    "virtlogd-admin.socket",
    "virtlogd",
    "docker.socket",
    "docker",
    "openvswitch-switch",
]

pytestmark = pytest.mark.integration


def role_default(role: str, name: str):
    return yaml.safe_load((ROOT / "roles" / role / "defaults/main.yml").read_text())[name]


def address(host_port: str) -> tuple[str, int]:
    host, _, port = host_port.rpartition(":")
    return host, int(port)


def metrics_default(name: str):
    return role_default("platform_metrics", f"platform_metrics_{name}")


# Where each service answers, from the roles' defaults: a TCP address or a Unix socket.
PORTAL = address(role_default("platform_portal", "platform_portal_bind"))
PROMETHEUS = address(metrics_default("prometheus_listen"))
NODE_EXPORTER = ("127.0.0.1", metrics_default("node_exporter_port"))
LAB_EXPORTER = ("127.0.0.1", metrics_default("lab_exporter_port"))
BASTION = ("127.0.0.1", role_default("platform_bastion", "platform_bastion_port"))
REDIS_URL = role_default("platform_jobs", "platform_jobs_redis_url")
WORKER_STOP_SECONDS = role_default("platform_jobs", "platform_jobs_stop_seconds")
DATABASE_URL = "postgresql+psycopg://{u}:{p}@127.0.0.1:5432/{d}".format(
    u=role_default("platform_jobs", "platform_jobs_db_user"),
    p=role_default("platform_jobs", "platform_jobs_db_password"),
    d=role_default("platform_jobs", "platform_jobs_db_name"),
)
SERVICES: dict[str, tuple[str, int] | str] = {
    "nginx (HTTP)": ("127.0.0.1", role_default("platform_nginx", "platform_nginx_http_port")),
    "nginx (HTTPS)": ("127.0.0.1", role_default("platform_nginx", "platform_nginx_https_port")),
    "portal": PORTAL,
    "Prometheus": PROMETHEUS,
    "node exporter": NODE_EXPORTER,
    "lab exporter": LAB_EXPORTER,
    "bastion": BASTION,
    "Redis": ("127.0.0.1", 6379),
    "PostgreSQL": ("127.0.0.1", 5432),
    "dockerd": "/var/run/docker.sock",
    "ovsdb-server": "/var/run/openvswitch/db.sock",
    "libvirtd": "/var/run/libvirt/libvirt-sock",
}


def answers(where: tuple[str, int] | str) -> bool:
    """Whether something accepts a connection there."""
    family = socket.AF_UNIX if isinstance(where, str) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.settimeout(2)
        try:
            probe.connect(where)
        except OSError:
            return False
    return True


def run(
    argv: list[str], ok: tuple[int, ...] = (0,), timeout: float = 120
) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    assert done.returncode in ok, f"{argv}: {done.returncode}\n{done.stdout}{done.stderr}"
    return done


def systemd_runs() -> bool:
    return Path("/run/systemd/system").is_dir()  # what sd_booted() checks


def stop_pid_file(pid_file: Path, *more: str, retry: str = STOP_RETRY) -> None:
    # 1: nothing of that pid file was running.
    run(
        [
            *("start-stop-daemon", "--stop", "--pidfile", str(pid_file), "--remove-pidfile"),
            *("--retry", retry, *more),
        ],
        ok=(0, 1),
        timeout=300,
    )


def ltb_units() -> list[str]:
    """The units of the platform's own daemons (roles/platform_daemon), under systemd."""
    return sorted(path.name for path in Path("/etc/systemd/system").glob("ltb-*.service"))


def stop_platform() -> None:
    """Stops every service of the platform as an operator would, then empties /run/ltb."""
    if systemd_runs():
        run(["systemctl", "stop", *ltb_units(), *SYSTEMD_UNITS])
    else:
        # supervisord stops the daemons it supervises (a worker after its running task),
        # then itself.
        stop_pid_file(SUPERVISOR_PID_FILE, retry=f"TERM/{WORKER_STOP_SECONDS + 30}/KILL/5")
    # Daemons still started the old way (start-stop-daemon) before site.yml handed them over.
    for pid_file in sorted(RUN_DIR.glob("*.pid")):
        if pid_file.name != "dockerd.pid":  # after libvirt, with the hypervisor's daemons
            stop_pid_file(pid_file)
    if not systemd_runs():
        run(["/etc/init.d/redis-server", "stop"])
        version = role_default("platform_jobs", "platform_jobs_postgresql_version")
        cluster = role_default("platform_jobs", "platform_jobs_postgresql_cluster")
        # 2: the cluster was not running.
        run(["pg_ctlcluster", str(version), cluster, "stop", "-m", "fast"], ok=(0, 2))
        stop_pid_file(Path("/run/libvirtd.pid"))
        stop_pid_file(Path("/run/virtlogd.pid"))
        stop_pid_file(RUN_DIR / "dockerd.pid")
        run([role_default("platform_services", "platform_services_ovs_ctl"), "stop"])
    shutil.rmtree(RUN_DIR, ignore_errors=True)


def supervised_daemons_not_running() -> dict[str, str]:
    """The platform's own daemons that their supervisor does not report running (second
    instances that other tests set up and left behind do not count)."""
    workers = role_default("platform_jobs", "platform_jobs_workers")
    daemons = [
        role_default("platform_portal", "platform_portal_name"),
        *(f"ltb-worker-{n}" for n in range(1, workers + 1)),
        "ltb-scheduler",
        role_default("platform_bastion", "platform_bastion_name"),
        "ltb-lab-exporter",
    ]
    if systemd_runs():
        states = {
            name: run(["systemctl", "is-active", name], ok=(0, 3)).stdout.strip()
            for name in daemons
        }
    else:
        daemons += ["ltb-nginx", "ltb-node-exporter", "ltb-prometheus"]
        status = run(["supervisorctl", "status", *daemons], ok=(0, 3, 4)).stdout
        states = dict.fromkeys(daemons, "unknown") | {
            line.split()[0]: line.split()[1] for line in status.splitlines() if line.strip()
        }
    return {name: state for name, state in states.items() if state not in ("active", "RUNNING")}


def running_lab_nodes() -> list[str]:
    nodes = []
    if answers(SERVICES["dockerd"]):
        client = docker.from_env()
        try:
            nodes += [c.name for c in client.containers.list(filters={"label": "ltb.lab"})]
        finally:
            client.close()
    if answers(SERVICES["libvirtd"]):
        domains = run(["virsh", "-c", LIBVIRT_URI, "list", "--name"]).stdout.split()
        nodes += [name for name in domains if name.startswith("ltb-")]
    return nodes


@dataclasses.dataclass
class SiteRun:
    returncode: int
    output: dict
    stderr: str
    seconds: float

    def results(self):
        """(play, task, host, result) of every task result, loop items included."""
        for play in self.output.get("plays", []):
            for task in play["tasks"]:
                for host, result in task["hosts"].items():
                    for item in [result, *result.get("results", [])]:
                        yield play["play"]["name"], task["task"]["name"], host, item

    def failures(self) -> str:
        failed = [
            f"{host}: {task}: {result.get('msg', result)}"
            for _, task, host, result in self.results()
            if result.get("failed")
        ]
        return "\n".join(failed) or self.stderr[-3000:]

    def changed_tasks(self) -> list[str]:
        changed = {f"{p} / {t} ({h})" for p, t, h, r in self.results() if r.get("changed")}
        return sorted(changed)


def run_site() -> SiteRun:
    """`ansible-playbook playbooks/site.yml` as `make up` runs it, in an operator's environment
    (none of the test session's LTB_ settings reaches the daemons it starts)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LTB_", "ANSIBLE_"))}
    env.update(
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        PATH=f"{BIN}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}",
    )
    started = time.monotonic()
    done = subprocess.run(
        [str(BIN / "ansible-playbook"), "playbooks/site.yml"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    try:
        output = json.loads(done.stdout)
    except json.JSONDecodeError:
        output = {"plays": [], "stats": {}}
    seconds = time.monotonic() - started
    return SiteRun(done.returncode, output, done.stdout[-2000:] + done.stderr, seconds)


@dataclasses.dataclass
class FromNothing:
    daemons: list[str]  # pid files in /run/ltb before the services were stopped
    left_running: list[str]  # services that still answered after stopping
    run: SiteRun


@pytest.fixture(scope="module")
def from_nothing() -> FromNothing:
    nodes = running_lab_nodes()
    if nodes:
        pytest.fail(f"lab nodes run, and stopping Docker and libvirt would stop them: {nodes}")
    daemons = sorted(p.name for p in RUN_DIR.glob("*.pid"))
    stop_platform()
    left_running = [name for name, where in SERVICES.items() if answers(where)]
    # Run site.yml even when something was left running: the tests after these need it.
    site = run_site()
    print(f"site.yml from nothing: {site.seconds:.1f} s")
    assert site.returncode == 0, site.failures()
    return FromNothing(daemons, left_running, site)


def https_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would replace the certificate checked
    session.verify = CERTIFICATE
    return session


@pytest.fixture(scope="module")
def admin(from_nothing) -> requests.Session:
    session = https_session()
    answer = session.post(
        f"{SITE}/api/auth/login",
        json={"username": "admin", "password": ADMIN_PASSWORD.read_text().strip()},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    session.headers["X-CSRF-Token"] = answer.json()["csrf_token"]
    return session


def test_stopping_the_platform_leaves_nothing_answering_and_site_starts_every_daemon(
    from_nothing,
):
    left = from_nothing.left_running
    assert not left, f"still answering when stopped: {left}"
    assert from_nothing.daemons, "no daemon had a pid file in /run/ltb before: was `make up` run?"
    for name in from_nothing.daemons:
        pid_file = RUN_DIR / name
        assert pid_file.is_file(), f"{name}: site.yml did not start this daemon again"
        pid = int(pid_file.read_text())
        assert Path(f"/proc/{pid}").exists(), f"{name}: process {pid} is gone"
    for name, where in SERVICES.items():
        assert answers(where), f"{name} does not answer at {where}"
    assert not supervised_daemons_not_running()


def test_the_portal_answers_through_nginx_with_tls_sessions_and_tokens(admin):
    plain = requests.get("http://127.0.0.1/login", allow_redirects=False, timeout=10)
    assert plain.status_code == 301 and plain.headers["Location"] == f"{SITE}/login"
    page = https_session().get(f"{SITE}/login", timeout=10)
    assert page.status_code == 200 and "<form" in page.text
    made = admin.post(f"{SITE}/api/auth/tokens", json={"name": "site-from-nothing"}, timeout=10)
    assert made.status_code == 201, made.text
    try:
        bearer = {"Authorization": f"Bearer {made.json()['token']}"}
        me = https_session().get(f"{SITE}/api/auth/me", headers=bearer, timeout=10)
        assert me.status_code == 200 and me.json()["username"] == "admin", me.text
    finally:
        admin.delete(f"{SITE}/api/auth/tokens/{made.json()['id']}", timeout=10)


def test_prometheus_answers_admins_through_nginx_and_sends_others_to_log_in(admin):
    ready = admin.get(f"{SITE}/prometheus/-/ready", timeout=10)
    assert ready.status_code == 200, ready.text
    anonymous = https_session().get(f"{SITE}/prometheus/-/ready", allow_redirects=False, timeout=10)
    assert anonymous.status_code == 302
    assert anonymous.headers["Location"] == f"{SITE}/login?next=/prometheus/-/ready"


def test_a_terminal_websocket_upgrade_reaches_the_portal_through_nginx(from_nothing):
    # The portal routes only WebSocket requests to a terminal socket: nginx passed the
    # upgrade on when an anonymous one is asked to log in (401), not refused as a plain
    # request to that path is (400).
    socket_path = f"{SITE}/labs/1/nodes/r1/terminal/socket"
    upgrade = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    }
    assert https_session().get(socket_path, headers=upgrade, timeout=10).status_code == 401
    assert https_session().get(socket_path, timeout=10).status_code == 400


def test_the_services_behind_no_proxy_answer_directly(from_nothing):
    with socket.create_connection(BASTION, timeout=10) as bastion:
        assert bastion.makefile("rb").readline().startswith(b"SSH-2.0-OpenSSH")
    node = requests.get("http://{}:{}/metrics".format(*NODE_EXPORTER), timeout=10)
    assert node.status_code == 200 and "node_exporter_build_info" in node.text
    lab = requests.get("http://{}:{}/metrics".format(*LAB_EXPORTER), timeout=10)
    assert lab.status_code == 200 and "ltb_lab_exporter_errors_total" in lab.text
    assert Redis.from_url(REDIS_URL).ping()
    engine = create_engine(DATABASE_URL)
    try:
        with engine.connect() as connection:
            assert connection.scalar(text("SELECT count(*) FROM alembic_version")) == 1
    finally:
        engine.dispose()
    client = docker.from_env()
    try:
        assert client.ping()
    finally:
        client.close()
    run(["ovs-vsctl", "--timeout=10", "show"])
    run(["virsh", "-c", LIBVIRT_URI, "version"])


def test_a_worker_of_the_platform_runs_a_queued_job(from_nothing):
    queue = Queue(CONTROL_QUEUE, connection=Redis.from_url(REDIS_URL))
    job = queue.enqueue("os.getcwd", result_ttl=60, ttl=60)
    deadline = time.monotonic() + 30
    while not job.is_finished and time.monotonic() < deadline:
        assert not job.is_failed, job.latest_result()
        time.sleep(0.2)
        job.refresh()
    assert job.is_finished, f"no worker took job {job.id} of queue {CONTROL_QUEUE}"
    assert job.return_value() == str(ROOT)  # the workers' directory: the role started them


def test_a_second_run_of_site_changes_nothing(from_nothing):
    again = run_site()
    print(f"site.yml again: {again.seconds:.1f} s")
    assert again.returncode == 0, again.failures()
    assert again.output["stats"], again.stderr
    changed = {host: stats["changed"] for host, stats in again.output["stats"].items()}
    assert set(changed.values()) == {0}, f"{changed}: {again.changed_tasks()}"


def test_prometheus_scrapes_every_target_it_is_given(admin):
    # After the second run at least one scrape interval has passed since Prometheus started.
    deadline = time.monotonic() + 30
    while True:
        answer = admin.get(f"{SITE}/prometheus/api/v1/targets", timeout=10)
        assert answer.status_code == 200, answer.text
        targets = answer.json()["data"]["activeTargets"]
        down = {t["scrapeUrl"]: t["health"] for t in targets if t["health"] != "up"}
        if (targets and not down) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert targets and not down, f"targets not up: {down}"


# The smallest domain QEMU starts: started paused, no guest runs (tests/integration/
# test_node_states.py does the same).
PAUSED_DOMAIN = """<domain type='qemu'><name>{name}</name><memory unit='MiB'>32</memory>
<vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os></domain>"""


def _parent(pid: int) -> int:
    # /proc/<pid>/stat: "pid (comm) state ppid ...": comm may hold spaces, so split after ")".
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


def test_without_init_a_stopped_qemu_is_reaped_by_tini_not_pid_1(from_nothing, tmp_path):
    """libvirt waits until a stopped QEMU is reaped; this machine's PID 1 reaps about once a
    second, which held up every VM that stopped (roles/platform_libvirt/tasks/
    libvirtd_direct.yml). Under tini as subreaper, libvirtd's daemonized QEMU is tini's."""
    if systemd_runs():
        pytest.skip("systemd is PID 1 and reaps at once: libvirtd runs as its unit")
    name = "ltb-platform-reaper-test"
    xml = tmp_path / "domain.xml"
    xml.write_text(PAUSED_DOMAIN.format(name=name))
    virsh = ["virsh", "-c", LIBVIRT_URI]
    subprocess.run([*virsh, "define", str(xml)], check=True, capture_output=True)
    try:
        subprocess.run([*virsh, "start", "--paused", name], check=True, capture_output=True)
        qemu = int(Path(f"/run/libvirt/qemu/{name}.pid").read_text())
        libvirtd = int(Path("/run/libvirtd.pid").read_text())
        reaper = _parent(qemu)
        assert reaper != 1, "QEMU is PID 1's to reap: libvirtd was started without tini"
        assert Path(f"/proc/{reaper}/comm").read_text().strip() == "tini"
        assert _parent(libvirtd) == reaper
    finally:
        subprocess.run([*virsh, "destroy", name], capture_output=True, check=False)
        subprocess.run([*virsh, "undefine", name], capture_output=True, check=False)
