"""SSH to lab nodes through the bastion, with the real OpenSSH client: a key registered
through the API reaches the nodes of its user's running lab (a container and a VM) with
`ssh -J` and with the lab's ssh_config, and nothing else: not another user's node, not the
hypervisor's services, not a shell on the bastion; a deleted key, a disabled user and a
removed lab are refused on the next connection.

One lab (a container and a VM node) is deployed once for the module by a real worker, from
a template through the portal. The portal runs live on a free port with this run's database,
and a second bastion instance (roles/platform_bastion, run by ansible-playbook with its own
directory, port and portal) asks it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from redis import Redis
from werkzeug.serving import make_server

from ltb.resources import find_lab_resources
from portal.auth import hash_password, new_token, token_hash
from store.db import session_factory
from store.models import (
    ApiToken,
    Job,
    Lab,
    LabState,
    Node,
    Role,
    Template,
    TemplateVersion,
    User,
    Visibility,
    utcnow,
)
from tests.app_config import portal_app
from tests.daemons import forget_daemon
from tests.integration.conftest import remove

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
TOPOLOGY = """\
name: bn-ssh
nodes:
  c1:
    interfaces:
      eth1: {ipv4: 10.209.1.1/24}
  v1:
    kind: vm
    resources: {cpus: 1, memory: 256MiB}
    interfaces:
      eth1: {ipv4: 10.209.1.2/24}
links:
  - endpoints: [c1:eth1, v1:eth1]
"""
# Another user's "running" lab, only in the store: its address is what that user's key may
# reach, and what the owner's key must not.
OTHER_NODE = "10.255.77.2"
SSH_TIMEOUT = 60
# A VM under TCG on a busy two-core machine: its deploy may take minutes.
JOB_WAIT = 900


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Person:
    user_id: int
    token: str
    key: Path  # private key; its .pub is registered
    config: Path  # ssh client config: this key only, no agent, no known hosts

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class World:
    portal: str
    bastion_port: int
    owner: Person
    other: Person
    lab_id: int
    lab_name: str
    nodes: dict[str, str]  # node name -> management address
    tmp: Path
    bastion_dir: Path

    @property
    def jump(self) -> str:
        return f"ltb@127.0.0.1:{self.bastion_port}"


def ssh(person: Person, *args: str, timeout: float = SSH_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ssh", "-F", str(person.config), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def through_bastion(world: World, person: Person, node: str, *command: str):
    return ssh(person, "-J", world.jump, f"root@{node}", *command)


def bastion(world: World, person: Person, *options: str, command: tuple[str, ...] = ()):
    """ssh to the bastion itself; LogLevel INFO shows why a channel was refused."""
    return ssh(
        person, "-o", "LogLevel=INFO", "-p", str(world.bastion_port), *options,
        "ltb@127.0.0.1", *command,
    )  # fmt: skip


def refused(result: subprocess.CompletedProcess) -> bool:
    return result.returncode != 0 and "Permission denied (publickey)" in result.stderr


def make_person(store, tmp: Path, name: str, portal: str) -> Person:
    with store() as session:
        user = User(
            username=f"bn-{name}-{uuid.uuid4().hex[:6]}",
            password_hash=hash_password("not used here"),
            role=Role.STUDENT.value,
            disabled=False,
            session_epoch=0,
            created_at=utcnow(),
        )
        session.add(user)
        session.flush()
        token = new_token()
        session.add(
            ApiToken(
                user_id=user.id,
                name="bn",
                token_hash=token_hash(token),
                prefix=token[:12],
                created_at=utcnow(),
                expires_at=utcnow().replace(year=utcnow().year + 1),
            )
        )
        session.commit()
        user_id = user.id
    key = tmp / f"id_{name}"
    config = tmp / f"ssh_config_{name}"
    person = Person(user_id, token, key, config)
    write_client_config(config, key)
    register_key(portal, person, key, name)
    return person


def write_client_config(config: Path, key: Path) -> None:
    if not key.exists():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", key.name, "-f", str(key)],
            check=True,
        )
    config.write_text(
        "Host *\n"
        f"    IdentityFile {key}\n"
        "    IdentitiesOnly yes\n"
        "    IdentityAgent none\n"
        "    BatchMode yes\n"
        "    StrictHostKeyChecking no\n"
        "    UserKnownHostsFile /dev/null\n"
        "    LogLevel ERROR\n"
        "    ConnectTimeout 20\n"
    )


def register_key(portal: str, person: Person, key: Path, name: str) -> dict:
    answer = requests.post(
        f"{portal}/api/users/me/keys",
        json={"name": name, "public_key": key.with_suffix(".pub").read_text()},
        headers=person.headers,
        timeout=10,
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def wait_for_job(store, job_id: str, worker: subprocess.Popen, log: Path) -> str:
    deadline = time.monotonic() + JOB_WAIT
    while time.monotonic() < deadline:
        with store() as session:
            status = session.get(Job, job_id).status
        if status not in ("queued", "started"):
            return status
        if worker is not None:
            assert worker.poll() is None, log.read_text()[-3000:]
        time.sleep(1)
    raise AssertionError(f"job {job_id} did not end\n{log.read_text()[-3000:] if log else ''}")


def remove_lab(store, portal: str, lab_id: int, owner: Person, worker, log, tmp: Path) -> None:
    """Remove the module's lab through the portal once its jobs ended; what is still left
    (a worker that died) by the remove playbook."""
    with store() as session:
        lab = session.get(Lab, lab_id)
        name = lab.name
        active = [job.id for job in lab.jobs if job.status in ("queued", "started")]
    for job_id in active:
        wait_for_job(store, job_id, worker, log)
    answer = requests.delete(f"{portal}/api/labs/{lab_id}", headers=owner.headers, timeout=30)
    if answer.status_code == 202:
        wait_for_job(store, answer.json()["id"], worker, log)
    if not find_lab_resources(name).empty():
        path = tmp / f"{name}.lab.yml"
        path.write_text(TOPOLOGY.replace("name: bn-ssh", f"name: {name}"))
        remove(path)


@contextlib.contextmanager
def live_portal(app) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


@dataclass
class BastionSetUp:
    directory: Path
    process: subprocess.Popen

    def wait(self) -> None:
        out, _ = self.process.communicate(timeout=300)
        assert self.process.returncode == 0, out[-4000:]


@contextlib.contextmanager
def bastion_instance(portal: str, port: int) -> Iterator[BastionSetUp]:
    """A second bastion of the platform's role, with its own directory, port and portal; set
    up in the background (it overlaps the lab's deploy): call .wait() before using it."""
    name = f"ltb-bastion-bn-{uuid.uuid4().hex[:6]}"
    directory = Path("/etc/ltb") / name
    extra = {
        "platform_bastion_dir": str(directory),
        "platform_bastion_name": name,
        "platform_bastion_port": port,
        "platform_bastion_portal_url": portal,
    }
    process = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("ansible-playbook")),
            "playbooks/site.yml",
            "--tags",
            "bastion",
            "-e",
            json.dumps(extra),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield BastionSetUp(directory, process)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        subprocess.run(
            ["start-stop-daemon", "--stop", "--pidfile", f"/run/ltb/{name}.pid", "--retry", "5"],
            capture_output=True,
        )
        forget_daemon(name)
        subprocess.run(["rm", "-rf", str(directory)], check=False)
        Path(f"/var/log/ltb/{name}.log").unlink(missing_ok=True)


@pytest.fixture(scope="module")
def world(job_settings, roomy_inventory, tmp_path_factory) -> Iterator[World]:
    store = session_factory(job_settings.database_url)
    tmp = tmp_path_factory.mktemp("bastion")
    redis = Redis.from_url(job_settings.redis_url)
    redis.flushdb()
    bastion_port = free_port()
    secret_hash = Path("/nonexistent")  # the bastion instance's, once its name is known
    app = portal_app(
        job_settings.database_url,
        roomy_inventory,
        LTB_BASTION_HOST="127.0.0.1",
        LTB_BASTION_PORT=bastion_port,
        LTB_BASTION_SECRET_HASH_FILE=str(secret_hash),
    )
    log = tmp / "worker.log"
    with (
        live_portal(app) as portal,
        bastion_instance(portal, bastion_port) as set_up,
        open(log, "w") as log_file,
    ):
        directory = set_up.directory
        app.config["LTB_BASTION_SECRET_HASH_FILE"] = str(directory / "portal-secret.sha256")
        worker = subprocess.Popen(
            [sys.executable, "-m", "jobs", "worker"],
            cwd=ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        lab_id = None
        owner = None
        try:
            owner = make_person(store, tmp, "owner", portal)
            other = make_person(store, tmp, "other", portal)
            with store() as session:
                template = Template(
                    owner_id=owner.user_id,
                    name=f"bn-{uuid.uuid4().hex[:4]}",
                    visibility=Visibility.PRIVATE.value,
                    created_at=utcnow(),
                    updated_at=utcnow(),
                )
                template.versions.append(
                    TemplateVersion(
                        number=1,
                        topology=TOPOLOGY,
                        created_at=utcnow(),
                        created_by_id=owner.user_id,
                    )
                )
                other_lab = Lab(
                    name=f"bn-{uuid.uuid4().hex[:8]}",
                    owner_id=other.user_id,
                    topology="name: x\n",
                    state=LabState.RUNNING.value,
                    hypervisor="localhost",
                    created_at=utcnow(),
                    updated_at=utcnow(),
                )
                other_lab.nodes.append(
                    Node(name="r1", kind="container", mgmt_ipv4=f"{OTHER_NODE}/24")
                )
                session.add_all([template, other_lab])
                session.commit()
                template_id = template.id
            started = requests.post(
                f"{portal}/api/labs",
                json={"template_id": template_id},
                headers=owner.headers,
                timeout=60,
            )
            assert started.status_code == 202, started.text
            lab_id = started.json()["lab"]["id"]
            set_up.wait()
            status = wait_for_job(store, started.json()["job"]["id"], worker, log)
            assert status == "successful", log.read_text()[-3000:]
            lab = requests.get(f"{portal}/api/labs/{lab_id}", headers=owner.headers, timeout=30)
            nodes = {n["name"]: n["mgmt_ipv4"].split("/")[0] for n in lab.json()["nodes"]}
            yield World(
                portal,
                bastion_port,
                owner,
                other,
                lab_id,
                lab.json()["name"],
                nodes,
                tmp,
                directory,
            )
        finally:
            if lab_id is not None and owner is not None:
                remove_lab(store, portal, lab_id, owner, worker, log, tmp)
            for _ in range(2):  # rq: a first SIGTERM waits for the job, a second stops it
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(worker.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    worker.wait(10)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.pid, signal.SIGKILL)
            redis.flushdb()


def test_the_owners_key_reaches_a_container_node_and_a_vm_node_with_ssh_j(world):
    for name in ("c1", "v1"):
        result = through_bastion(world, world.owner, world.nodes[name], "hostname")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == name


def test_the_one_liner_of_the_portal_names_the_bastion_and_the_node(world):
    node = requests.get(
        f"{world.portal}/api/labs/{world.lab_id}/nodes/c1", headers=world.owner.headers, timeout=30
    ).json()
    assert node["ssh_bastion"] == f"ssh -J {world.jump} root@{world.nodes['c1']}"


def test_another_users_key_is_refused_for_the_owners_node(world):
    # The other user's key opens the bastion (they have a running lab of their own) but not
    # the way to the owner's node; the node has not their key either.
    jumped = through_bastion(world, world.other, world.nodes["c1"], "hostname")
    assert jumped.returncode == 255 and jumped.stdout == ""
    assert "stdio forwarding failed" in jumped.stderr, jumped.stderr
    direct = bastion(world, world.other, "-W", f"{world.nodes['c1']}:22")
    assert "administratively prohibited" in direct.stderr, direct.stderr


@pytest.mark.parametrize(
    "target",
    ["127.0.0.1:8080", "127.0.0.1:22", f"{OTHER_NODE}:22", "NODE:80"],
    ids=["hypervisor-portal", "hypervisor-sshd", "another-labs-node", "own-node-other-port"],
)
def test_forwarding_to_anything_but_port_22_of_own_nodes_is_refused(world, target):
    target = target.replace("NODE", world.nodes["c1"])
    result = bastion(world, world.owner, "-W", target)
    assert result.returncode != 0
    assert "administratively prohibited" in result.stderr, result.stderr


def test_a_local_forward_to_the_hypervisor_carries_nothing(world):
    port = free_port()
    tunnel = subprocess.Popen(
        [
            "ssh", "-F", str(world.owner.config), "-o", "LogLevel=INFO", "-N",
            "-p", str(world.bastion_port),
            "-L", f"127.0.0.1:{port}:127.0.0.1:8080", "ltb@127.0.0.1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                connection = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline and tunnel.poll() is None
                time.sleep(0.2)
        with connection:
            connection.sendall(b"GET /api/auth/me HTTP/1.0\r\n\r\n")
            try:
                answer = connection.recv(100)
            except ConnectionResetError:
                answer = b""
            assert answer == b""  # closed: the bastion refused the channel
    finally:
        tunnel.terminate()
        _, errors = tunnel.communicate(timeout=10)
    assert "administratively prohibited" in errors


def test_the_bastion_gives_no_shell_and_no_tty(world):
    command = bastion(world, world.owner, command=("id",))
    assert command.returncode != 0 and "uid=" not in command.stdout
    assert "not available" in command.stdout + command.stderr
    shell = bastion(world, world.owner, "-tt", command=("id",))
    assert shell.returncode != 0 and "uid=" not in shell.stdout
    assert "PTY allocation request failed" in shell.stderr, shell.stderr


def test_the_labs_ssh_config_reaches_each_node_by_its_host_name(world):
    answer = requests.get(
        f"{world.portal}/api/labs/{world.lab_id}/ssh_config",
        headers=world.owner.headers,
        timeout=30,
    )
    assert answer.status_code == 200
    # The user's own identity first (as in their ~/.ssh/config), then the lab's file.
    config = world.tmp / "lab_ssh_config"
    config.write_text(world.owner.config.read_text() + "\n" + answer.text)
    for name in ("c1", "v1"):
        result = subprocess.run(
            ["ssh", "-F", str(config), f"{world.lab_name}-{name}", "hostname"],
            capture_output=True,
            text=True,
            timeout=SSH_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == name


def test_a_deleted_key_is_refused_on_the_next_connection(world):
    spare = world.tmp / "id_spare"
    person = Person(world.owner.user_id, world.owner.token, spare, world.tmp / "ssh_config_spare")
    write_client_config(person.config, spare)
    key = register_key(world.portal, person, spare, "spare")
    # The bastion lets the new key through at once (the node itself has the deploy's keys).
    assert not refused(bastion(world, person, "-W", f"{world.nodes['c1']}:22"))
    gone = requests.delete(
        f"{world.portal}/api/users/me/keys/{key['id']}", headers=person.headers, timeout=30
    )
    assert gone.status_code == 204
    assert refused(bastion(world, person, "-W", f"{world.nodes['c1']}:22"))


def test_a_disabled_user_is_refused_on_the_next_connection(world, store):
    with store() as session:
        session.get(User, world.owner.user_id).disabled = True
        session.commit()
    try:
        assert refused(through_bastion(world, world.owner, world.nodes["c1"], "true"))
    finally:
        with store() as session:
            session.get(User, world.owner.user_id).disabled = False
            session.commit()
    assert through_bastion(world, world.owner, world.nodes["c1"], "true").returncode == 0


def test_a_removed_lab_is_refused_on_the_next_connection(world, store):
    # Last: it removes the module's lab (the fixture then has nothing left to remove).
    assert through_bastion(world, world.owner, world.nodes["c1"], "true").returncode == 0
    answer = requests.delete(
        f"{world.portal}/api/labs/{world.lab_id}", headers=world.owner.headers, timeout=30
    )
    assert answer.status_code == 202
    job_id = answer.json()["id"]
    wait_for_job(store, job_id, None, None)
    with store() as session:
        job = session.get(Job, job_id)
        assert job.status == "successful", job.result
    assert refused(bastion(world, world.owner, "-W", f"{world.nodes['c1']}:22"))


def test_only_the_keys_commands_user_reads_the_secret_and_the_portal_has_its_hash(world):
    secret = world.bastion_dir / "keys-command.secret"
    kept = world.bastion_dir / "portal-secret.sha256"
    assert (secret.stat().st_mode & 0o777, secret.owner()) == (0o400, "ltb-bastion-keys")
    assert (kept.stat().st_mode & 0o777, kept.owner()) == (0o600, "root")
    assert (
        kept.read_text().strip() == hashlib.sha256(secret.read_text().strip().encode()).hexdigest()
    )
