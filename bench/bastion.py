"""Bastion benchmark: SSH connection set-up through the bastion against a direct SSH.

1. A scratch PostgreSQL database (made and dropped here) with a bench user (`bb-*`) and a
   registered ed25519 key; an rq worker of its own (Redis DB of LTB_TEST_REDIS_URL, default 8,
   its own queue) deploys a one-container lab (`bb-*`, with --vm also a VM node) owned by
   that user, so the deploy puts the user's key into the nodes.
2. The portal under gunicorn (bench.portal.Portal) on a free port, and a second bastion
   instance of roles/platform_bastion (tests/access/test_bastion.py's bastion_instance: its
   own directory, port and sshd) whose AuthorizedKeysCommand asks that portal.
3. For each node, N rounds, each round one connection of every variant (interleaved, so a
   change in the machine's load hits all variants alike), each `ssh ... true`, timed from
   start to exit:
   - direct:     `ssh root@<node> true` from the hypervisor with the platform key;
   - jump:       `ssh -J ltb@127.0.0.1:<port> root@<node> true`, ControlMaster off;
   - ssh_config: the lab's ssh_config from the portal (ProxyJump), ControlMaster off;
   - jump_mux:   `ssh -J ...` with ControlMaster on for the bastion hop (ControlPersist):
                 what a user with multiplexing in their ~/.ssh/config gets after the first.
   Then: the portal's answer time of /api/bastion/authorized-keys (client and server side),
   the AuthorizedKeysCommand's whole run (Python start, HTTP, answer) as sshd runs it, and
   how many times sshd runs it per connection (the portal's access log).

Everything is removed at the end, also on Ctrl-C or SIGTERM: the lab (through the worker),
the bastion instance (sshd stopped, its directory deleted), the portal, the worker, the
scratch database (with the user and the key), the temporary directory.

    .venv/bin/python bench/bastion.py [--connections 30] [--vm] [--label TEXT]

Results: a table on stdout and bench/results/bastion-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import terminals as bench_terminals  # noqa: E402
from bench.portal import Database, Portal, percentiles  # noqa: E402
from bench.terminals import Worker  # noqa: E402
from bench.terminals import make_user as make_student  # noqa: E402
from portal.api.bastion import SECRET_HEADER  # noqa: E402
from store.db import session_factory  # noqa: E402
from store.models import Job, Lab, SshKey, utcnow  # noqa: E402
from store.sshkeys import parse_public_key  # noqa: E402
from tests.access.test_bastion import (  # noqa: E402
    bastion_instance,
    free_port,
    write_client_config,
)

RESULTS = ROOT / "bench" / "results"
REDIS_URL = "redis://127.0.0.1:6379/8"
PLATFORM_KEY = Path(os.environ.get("LTB_STATE_DIR", "/var/lib/ltb")) / "ssh" / "id_ed25519"
CONTAINER = "name: {name}\nnodes:\n  c1: {{}}\n"
VM = "  v1:\n    kind: vm\n    resources: {cpus: 1, memory: 256MiB}\n"
# A VM under TCG on a busy two-core machine: its deploy may take minutes.
JOB_SECONDS = 900
SSH_TIMEOUT = 60
PASSWORD = bench_terminals.PASSWORD  # the password make_student gives
VARIANTS = ("direct", "jump", "ssh_config", "jump_mux")
KEYS_LINE = re.compile(r'"GET /api/bastion/authorized-keys" 200 \d+ (\d+)ms')


def make_user(database_url: str, key: Path) -> tuple[int, str, str]:
    """A student with a password (to fetch the lab's ssh_config) and the key of `key`.pub
    registered, as the portal stores it; returns its id, name and the key's fingerprint."""
    public = parse_public_key(key.with_suffix(".pub").read_text())
    user_id, name = make_student(database_url, prefix="bb-")
    with session_factory(database_url)() as session:
        session.add(
            SshKey(
                user_id=user_id,
                name="bench",
                public_key=public.line,
                fingerprint=public.fingerprint,
                created_at=utcnow(),
            )
        )
        session.commit()
    return user_id, name, public.fingerprint


def remove_lab(worker: Worker, lab: str) -> None:
    """Remove the lab once its jobs ended (a deploy interrupted by Ctrl-C runs on in the
    worker); nothing to do if it was never submitted."""
    sessions = session_factory(worker.env["LTB_DATABASE_URL"])
    deadline = time.monotonic() + JOB_SECONDS
    while True:
        with sessions() as session:
            row = session.query(Lab).filter_by(name=lab).one_or_none()
            if row is None:
                return
            busy = session.query(Job).filter(
                Job.lab_id == row.id, Job.status.in_(("queued", "started"))
            )
            if busy.count() == 0:
                break
        if time.monotonic() > deadline:
            raise RuntimeError(f"lab {lab}: its job did not end; remove it by hand")
        time.sleep(1)
    print(f"removing lab {lab}", file=sys.stderr)
    worker.run(lab, "remove")


def ssh_configs(workdir: Path, key: Path, lab_config: str) -> dict[str, list[str]]:
    """The ssh command line (without `true`) of each variant, per node: '{node}' and
    '{alias}' are filled in later. Every config: one key, no agent, no known hosts."""
    platform_config = workdir / "ssh_config_platform"
    write_client_config(platform_config, PLATFORM_KEY)
    user_config = workdir / "ssh_config_user"
    write_client_config(user_config, key)
    base = user_config.read_text()
    plain = workdir / "ssh_config_plain"
    plain.write_text(base + "    ControlMaster no\n")
    # The lab's file after the user's own identity, as in a user's ~/.ssh/config.
    lab = workdir / "ssh_config_lab"
    lab.write_text(base + "    ControlMaster no\n\n" + lab_config)
    mux = workdir / "ssh_config_mux"
    mux.write_text(
        # First match wins: the bastion's block before `Host *`. %C: a hash, short enough
        # for a socket path.
        "Host 127.0.0.1\n"
        "    ControlMaster auto\n"
        f"    ControlPath {workdir}/mux-%C\n"
        "    ControlPersist 600\n\n" + base
    )
    return {
        "direct": ["ssh", "-F", str(platform_config), "root@{node}"],
        "jump": ["ssh", "-F", str(plain), "-J", "{jump}", "root@{node}"],
        "ssh_config": ["ssh", "-F", str(lab), "{alias}"],
        "jump_mux": ["ssh", "-F", str(mux), "-J", "{jump}", "root@{node}"],
    }


def connect_ms(argv: list[str]) -> float:
    # stderr to a file, not a pipe: the multiplexing master that the first jump_mux
    # connection leaves running must not hold the pipe open.
    with tempfile.TemporaryFile("w+") as errors:
        started = time.perf_counter()
        result = subprocess.run(
            [*argv, "true"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            timeout=SSH_TIMEOUT,
        )
        elapsed = (time.perf_counter() - started) * 1000
        if result.returncode != 0:
            errors.seek(0)
            raise RuntimeError(f"{' '.join(argv)}: exit {result.returncode}: {errors.read()}")
    return elapsed


def keys_calls(portal: Portal) -> int:
    return len(KEYS_LINE.findall(portal.log_path.read_text()))


def keys_command(directory: Path) -> list[str]:
    """The AuthorizedKeysCommand with its arguments, as the instance's sshd_config names it
    (`%u %f` left in)."""
    for line in (directory / "sshd_config").read_text().splitlines():
        if line.startswith("AuthorizedKeysCommand "):
            return line.split()[1:]
    raise RuntimeError(f"no AuthorizedKeysCommand in {directory / 'sshd_config'}")


def time_keys_command(directory: Path, fingerprint: str, count: int) -> list[float]:
    """Runs of the AuthorizedKeysCommand as sshd runs it: as its user, `%u %f` filled in."""
    argv = [{"%u": "ltb", "%f": fingerprint}.get(word, word) for word in keys_command(directory)]
    account = pwd.getpwnam("ltb-bastion-keys")
    times = []
    for _ in range(count):
        started = time.perf_counter()
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=30,
            user=account.pw_uid,
            group=account.pw_gid,
            extra_groups=[],
        )
        times.append((time.perf_counter() - started) * 1000)
        if result.returncode != 0 or not result.stdout.startswith("restrict,"):
            raise RuntimeError(f"{argv[0]}: exit {result.returncode}: {result.stderr}")
    return times


def time_keys_api(base: str, secret: str, fingerprint: str, count: int) -> list[float]:
    """The portal's answer, a new connection each time as the AuthorizedKeysCommand makes."""
    times = []
    for _ in range(count):
        started = time.perf_counter()
        answer = requests.get(
            f"{base}/api/bastion/authorized-keys",
            params={"fingerprint": fingerprint},
            headers={SECRET_HEADER: secret},
            timeout=30,
        )
        times.append((time.perf_counter() - started) * 1000)
        if answer.status_code != 200 or not answer.json()["keys"]:
            raise RuntimeError(f"authorized-keys: {answer.status_code} {answer.text[:300]}")
    return times


def measure(
    args: argparse.Namespace,
    portal: Portal,
    bastion_dir: Path,
    bastion_port: int,
    commands: dict[str, list[str]],
    nodes: dict[str, str],
    lab: str,
    fingerprint: str,
) -> dict[str, Any]:
    jump = f"ltb@127.0.0.1:{bastion_port}"
    result: dict[str, Any] = {"nodes": {}}
    for name, address in nodes.items():
        argvs = {
            variant: [word.format(node=address, jump=jump, alias=f"{lab}-{name}") for word in argv]
            for variant, argv in commands.items()
        }
        # Warm-up (ARP, the node's first sshd start, the mux master), and how many times
        # sshd asks the portal per connection through the bastion.
        for argv in argvs.values():
            connect_ms(argv)
        before = keys_calls(portal)
        for _ in range(3):
            connect_ms(argvs["jump"])
        time.sleep(0.5)  # gunicorn logs a request after its answer
        calls = (keys_calls(portal) - before) / 3
        times: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
        for _ in range(args.connections):
            for variant in VARIANTS:
                times[variant].append(connect_ms(argvs[variant]))
        stats = {variant: percentiles(values) for variant, values in times.items()}
        direct = stats["direct"]
        result["nodes"][name] = {
            "address": address,
            "ms": stats,
            "ratio_to_direct": {
                variant: {
                    "p50": round(stats[variant]["p50"] / direct["p50"], 2),
                    "mean": round(stats[variant]["mean"] / direct["mean"], 2),
                }
                for variant in VARIANTS
            },
            "keys_command_runs_per_connection": calls,
        }
    secret = (bastion_dir / "keys-command.secret").read_text().strip()
    before = keys_calls(portal)
    api = time_keys_api(portal.base, secret, fingerprint, args.connections)
    server = [float(ms) for ms in KEYS_LINE.findall(portal.log_path.read_text())[before:]]
    result["keys_api_ms"] = percentiles(api)
    result["keys_api_server_ms"] = percentiles(server)
    result["keys_command_ms"] = percentiles(
        time_keys_command(bastion_dir, fingerprint, args.connections)
    )
    return result


def run(args: argparse.Namespace, cleanup: contextlib.ExitStack, workdir: Path) -> dict:
    if not PLATFORM_KEY.exists():  # ssh_configs' write_client_config would make one
        raise RuntimeError(f"no platform key at {PLATFORM_KEY}: run `make up` first")
    key = workdir / "id_user"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bb-bench", "-f", str(key)],
        check=True,
    )
    database = Database()
    cleanup.callback(database.close)
    user_id, username, fingerprint = make_user(database.url, key)
    bastion_port = free_port()
    # The bastion instance's directory is named when it is set up; the portal reads the
    # secret's hash through this link at each request.
    secret_hash = workdir / "portal-secret.sha256"
    portal = Portal(
        database.url,
        workdir,
        workers=2,
        threads=4,
        LTB_BASTION_HOST="127.0.0.1",
        LTB_BASTION_PORT=str(bastion_port),
        LTB_BASTION_SECRET_HASH_FILE=str(secret_hash),
    )
    cleanup.callback(portal.close)
    set_up = cleanup.enter_context(bastion_instance(portal.base, bastion_port))
    secret_hash.symlink_to(set_up.directory / "portal-secret.sha256")
    worker = Worker(database.url, workdir)
    cleanup.callback(worker.close)
    lab = f"bb-{uuid.uuid4().hex[:6]}"
    cleanup.callback(remove_lab, worker, lab)
    topology = CONTAINER.format(name=lab) + (VM if args.vm else "")
    deployed = time.monotonic()
    worker.run(lab, "deploy", topology=topology, owner_id=user_id)
    deploy_s = round(time.monotonic() - deployed, 1)
    set_up.wait()
    with session_factory(database.url)() as session:
        row = session.query(Lab).filter_by(name=lab).one()
        lab_id = row.id
        nodes = {node.name: node.mgmt_ipv4.split("/")[0] for node in row.nodes}
    with requests.Session() as client:
        login = client.post(
            f"{portal.base}/api/auth/login",
            json={"username": username, "password": PASSWORD},
            timeout=30,
        )
        login.raise_for_status()
        lab_config = client.get(f"{portal.base}/api/labs/{lab_id}/ssh_config", timeout=30)
        lab_config.raise_for_status()
    commands = ssh_configs(workdir, key, lab_config.text)
    # The multiplexing master of jump_mux lives on (ControlPersist) until told to exit.
    cleanup.callback(
        subprocess.run,
        [*commands["jump_mux"][:3], "-O", "exit", "-p", str(bastion_port), "ltb@127.0.0.1"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=30,
    )
    load_before = os.getloadavg()
    result = measure(
        args, portal, set_up.directory, bastion_port, commands, nodes, lab, fingerprint
    )
    return result | {
        "deploy_s": deploy_s,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
    }


def interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def cleaning_up(signum: int, frame: Any) -> None:
    print("cleaning up (lab, bastion, portal, worker, database): wait", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=30, help="per variant and node")
    parser.add_argument("--vm", action="store_true", help="also a VM node")
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    os.environ.setdefault("LTB_TEST_REDIS_URL", REDIS_URL)
    bench_terminals.DEPLOY_SECONDS = JOB_SECONDS  # Worker.run's wait, long enough for a VM
    signal.signal(signal.SIGTERM, interrupted)

    workdir = Path(tempfile.mkdtemp(prefix="ltb-bench-bastion-"))
    cleanup = contextlib.ExitStack()
    cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)
    try:
        result = run(args, cleanup, workdir)
    finally:
        # Cleaning up is not interrupted: a second Ctrl-C would leave the lab behind.
        signal.signal(signal.SIGINT, cleaning_up)
        signal.signal(signal.SIGTERM, cleaning_up)
        cleanup.close()
    report = {
        "label": args.label,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "connections": args.connections,
        "vm": args.vm,
        **result,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out = RESULTS / f"bastion-{stamp}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"results: {out.relative_to(ROOT)}")


def print_table(report: dict[str, Any]) -> None:
    load = report["load_average_before"][0], report["load_average_after"][0]
    print(
        f"bastion: {report['connections']} sequential `ssh ... true` per variant and node; "
        f"deploy {report['deploy_s']} s; load {load[0]:.1f} -> {load[1]:.1f}"
    )
    print(f"  {'node':<5} {'variant':<11} {'p50':>7} {'p90':>7} {'max':>7}  ratio p50 (ms)")
    for name, node in report["nodes"].items():
        for variant in VARIANTS:
            row = node["ms"][variant]
            print(
                f"  {name:<5} {variant:<11} {row['p50']:7.0f} {row['p90']:7.0f} "
                f"{row['max']:7.0f}  {node['ratio_to_direct'][variant]['p50']:5.2f}"
            )
        print(
            f"  {name:<5} AuthorizedKeysCommand runs per connection: "
            f"{node['keys_command_runs_per_connection']:g}"
        )
    for what, key in (
        ("keys API, client", "keys_api_ms"),
        ("keys API, server", "keys_api_server_ms"),
        ("keys command", "keys_command_ms"),
    ):
        row = report[key]
        print(f"  {what:<17} {row['p50']:7.1f} {row['p90']:7.1f} {row['max']:7.1f}")


if __name__ == "__main__":
    main()
