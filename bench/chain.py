"""Deploy/remove benchmark: LTB's playbooks against the same work done with bare commands.

For each N given with --nodes, a chain lab of N container nodes (node k linked to node k+1,
one /30 per link, the default node image) is deployed and removed

- by LTB: `ansible-playbook -i inventory/ -i LAB playbooks/deploy.yml`, then `remove.yml`;
- by a generated bash script of plain commands (`docker run`, `ip link`, `nsenter`,
  `ovs-vsctl`), run one node after the other as a naive operator would ("bare");
- by the same script with each node's work in the background (`&` + `wait`, "bare-parallel").

Each deploy and remove is measured by bench/measure.py (as every bench is): wall clock, its
CPU time from getrusage, and its memory sampled every 50 ms: the peak of the summed RSS (and
PSS) of the process tree started for it. dockerd, containerd and the OVS daemons are shared
by all variants and are not counted.
Each deployment is checked (containers running, ping across the first and last link and to the
first node's management address) before it is removed, and each removal is checked to leave
nothing behind.

    .venv/bin/python bench/chain.py --nodes 10 30 [--repeat 2]
    .venv/bin/python bench/chain.py --nodes 30 --variants ltb --profile \\
        --ltb-env ANSIBLE_PIPELINING=true

Results: a table on stdout and bench/results/chain-<timestamp>.json. Only labs named
<prefix>-* (--prefix, default bench) are created or removed. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.measure import Measurement, measure  # noqa: E402
from ltb.model import Lab  # noqa: E402
from ltb.topology import load_lab  # noqa: E402

VENV_BIN = ROOT / ".venv" / "bin"
RESULTS = ROOT / "bench" / "results"

# The settings the LTB roles use (group_vars and role defaults), so that the bare scripts do
# the same work as the playbooks.
IMAGE = "ltb/node:latest"
DATAPATH = "netdev"
STATE_DIR = Path("/var/lib/ltb")
AUTHORIZED_KEY = STATE_DIR / "ssh" / "id_ed25519.pub"
CAPABILITIES = ("NET_ADMIN", "SYS_ADMIN", "NET_RAW")
SYSCTLS = (
    ("net.ipv4.ip_forward", "1"),
    ("net.ipv6.conf.all.disable_ipv6", "0"),
    ("net.ipv6.conf.default.disable_ipv6", "0"),
    ("net.ipv6.conf.all.forwarding", "1"),
)
# What ltb_veth sets on the hypervisor end of every veth.
HOST_END_SYSCTLS = (
    ("ipv4", "arp_ignore", "8"),
    ("ipv4", "rp_filter", "1"),
    ("ipv6", "disable_ipv6", "1"),
)
READY_FILE = "/run/ltb-node-ready"
READY_TIMEOUT = 120

LINK_POOL = IPv4Address("10.100.0.0")  # link k uses the /30 at LINK_POOL + 4k
VARIANTS = ("ltb", "bare", "bare-parallel")
# Lab names: <--prefix>-<kind>-N, e.g. bench-chain-30; another --prefix keeps two people's
# runs on one machine apart.
LAB_KIND = {"ltb": "chain", "bare": "bare", "bare-parallel": "barep"}


# Topology -------------------------------------------------------------------------------------


def chain_topology(name: str, nodes: int) -> dict[str, Any]:
    """Node k's eth1 is linked to node k+1's eth2, with the k-th /30 of LINK_POOL."""
    topology: dict[str, Any] = {
        "name": name,
        "description": f"Benchmark chain of {nodes} container nodes",
        "nodes": {f"n{k}": {"interfaces": {}} for k in range(1, nodes + 1)},
        "links": [],
    }
    for k in range(1, nodes):
        base = LINK_POOL + 4 * (k - 1)
        topology["nodes"][f"n{k}"]["interfaces"]["eth1"] = {"ipv4": f"{base + 1}/30"}
        topology["nodes"][f"n{k + 1}"]["interfaces"]["eth2"] = {"ipv4": f"{base + 2}/30"}
        topology["links"].append({"endpoints": [f"n{k}:eth1", f"n{k + 1}:eth2"]})
    return topology


def write_topology(directory: Path, name: str, nodes: int) -> Path:
    path = directory / f"{name}.lab.yml"
    path.write_text(yaml.safe_dump(chain_topology(name, nodes), sort_keys=False))
    return path


# Bare scripts ---------------------------------------------------------------------------------


def _q(*words: object) -> str:
    return " ".join(shlex.quote(str(word)) for word in words)


def _wire(
    lab: Lab, node: str, pid: str, name: str, host: str, vlan: int | None, addresses: list
) -> list[str]:
    """Commands for one veth pair: create, move into the node, address, attach to the bridge."""
    temporary = "t" + host[1:]
    ns = f"nsenter -t {pid} -n"
    lines = [
        _q("ip", "link", "add", host, "type", "veth", "peer", "name", temporary),
        f"{_q('ip', 'link', 'set', temporary, 'netns')} {pid}",
        f"{ns} {_q('ip', 'link', 'set', temporary, 'name', name)}",
        *(f"{ns} {_q('ip', 'addr', 'add', str(a), 'dev', name)}" for a in addresses),
        f"{ns} {_q('ip', 'link', 'set', name, 'up')}",
        _q("ip", "link", "set", host, "alias", f"ltb:{lab.name}:{node}:{name}"),
    ]
    for family, key, value in HOST_END_SYSCTLS:
        lines.append(f"echo {value} > /proc/sys/net/{family}/conf/{host}/{key}")
    lines += [
        _q("ip", "link", "set", host, "up"),
        _q("ovs-vsctl", "add-port", lab.bridge, host, f"tag={vlan}")
        + " -- "
        + _q(
            "set",
            "port",
            host,
            f"external_ids:ltb-lab={lab.name}",
            f"external_ids:ltb-node={node}",
            f"external_ids:ltb-interface={name}",
        ),
    ]
    return lines


def _node_lines(lab: Lab, node_name: str) -> list[str]:
    node = lab.node(node_name)
    container = lab.container_name(node.name)
    names = ["eth0", *(i.name for i in node.interfaces)]
    run = ["docker", "run", "-d", "--name", container, "--hostname", node.name]
    run += ["--network", "none", "--restart", "no"]
    run += ["--label", f"ltb.lab={lab.name}", "--label", f"ltb.node={node.name}"]
    for capability in CAPABILITIES:
        run += ["--cap-add", capability]
    for key, value in SYSCTLS:
        run += ["--sysctl", f"{key}={value}"]
    run += ["-e", f"LTB_INTERFACES={' '.join(names)}", "-e", f"LTB_WAIT_SECONDS={READY_TIMEOUT}"]
    lines = [
        f"# node {node.name}",
        _q(*run, IMAGE) + " >/dev/null",
        f"pid=$(docker inspect -f '{{{{.State.Pid}}}}' {_q(container)})",
    ]
    if AUTHORIZED_KEY.exists():
        lines += [
            _q("docker", "exec", container, "mkdir", "-p", "/root/.ssh"),
            _q("docker", "exec", "-i", container, "sh", "-c", "cat >/root/.ssh/authorized_keys")
            + f" < {_q(AUTHORIZED_KEY)}",
        ]
    lines += _wire(lab, node.name, "$pid", "eth0", node.mgmt_host_name, 1, [node.mgmt_ipv4])
    for interface in node.interfaces:
        addresses = [a for a in (interface.ipv4, interface.ipv6) if a is not None]
        lines += _wire(
            lab, node.name, "$pid", interface.name, interface.host_name, interface.vlan, addresses
        )
    return lines


def _ready_line(lab: Lab, node_name: str) -> str:
    test = _q("docker", "exec", lab.container_name(node_name), "test", "-f", READY_FILE)
    return f"timeout {READY_TIMEOUT} sh -c {shlex.quote(f'until {test}; do sleep 0.2; done')}"


def bare_deploy_script(lab: Lab, topology: Path, parallel: bool) -> str:
    state = STATE_DIR / "labs" / lab.name
    lines = [
        "#!/bin/bash",
        f"# Deploy lab {lab.name} with plain commands"
        + (", each node in the background." if parallel else ", one node after the other."),
        "set -euo pipefail",
        _q("docker", "image", "inspect", IMAGE) + " >/dev/null",
        _q("ovs-vsctl", "add-br", lab.bridge)
        + " -- "
        + _q(
            "set",
            "bridge",
            lab.bridge,
            f"datapath_type={DATAPATH}",
            f"external_ids:ltb-lab={lab.name}",
            "other_config:forward-bpdu=true",
        ),
        _q("ovs-vsctl", "add-port", lab.bridge, lab.mgmt_port, "tag=1")
        + " -- "
        + _q("set", "interface", lab.mgmt_port, "type=internal")
        + " -- "
        + _q(
            "set",
            "port",
            lab.mgmt_port,
            f"external_ids:ltb-lab={lab.name}",
            "external_ids:ltb-role=management",
        ),
        _q("ip", "addr", "add", lab.mgmt_gateway, "dev", lab.mgmt_port),
        _q("ip", "link", "set", lab.mgmt_port, "up"),
        _q("mkdir", "-p", "-m", "0750", state),
        _q("cp", topology, state / "topology.lab.yml"),
    ]
    if parallel:
        lines.append("pids=()")
    if parallel:
        for node in lab.nodes:
            node_lines = [*_node_lines(lab, node.name), _ready_line(lab, node.name)]
            lines += ["(", *(f"    {line}" for line in node_lines), ") &", "pids+=($!)"]
        lines.append('for p in "${pids[@]}"; do wait "$p"; done')
    else:
        # Nodes start their services while the next ones are set up; then wait for them all.
        for node in lab.nodes:
            lines += _node_lines(lab, node.name)
        lines += [_ready_line(lab, node.name) for node in lab.nodes]
    return "\n".join(lines) + "\n"


def bare_remove_script(lab: Lab, parallel: bool) -> str:
    """docker rm -f, then the hypervisor ends of the node's veths, then the bridge.

    The kernel deletes a container's veth pairs only when it gets round to destroying the
    container's network namespace, which can be seconds after `docker rm` on a busy machine:
    like LTB's remove (ltb_veth state=absent), the script deletes the ones still there.
    """
    lines = [
        "#!/bin/bash",
        f"# Remove lab {lab.name} with plain commands"
        + (", each node in the background." if parallel else ", one node after the other."),
        "set -uo pipefail",
    ]
    for node in lab.nodes:
        host_ends = [node.mgmt_host_name, *(i.host_name for i in node.interfaces)]
        node_lines = [
            _q("docker", "rm", "-f", lab.container_name(node.name)) + " >/dev/null",
            *(_q("ip", "link", "del", name) + " 2>/dev/null" for name in host_ends),
        ]
        if parallel:
            lines += ["(", *(f"    {line}" for line in node_lines), ") &"]
        else:
            lines += node_lines
    if parallel:
        lines.append("wait")
    lines += [
        _q("ovs-vsctl", "--if-exists", "del-br", lab.bridge),
        _q("rm", "-rf", STATE_DIR / "labs" / lab.name),
    ]
    return "\n".join(lines) + "\n"


# Checks ---------------------------------------------------------------------------------------


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def lab_containers(lab: str, running_only: bool = False) -> list[str]:
    argv = ["docker", "ps", "-q", "--filter", f"label=ltb.lab={lab}"]
    return _run(*argv, *([] if running_only else ["-a"])).stdout.split()


def check_deployed(lab: Lab) -> list[str]:
    """Problems of a deployed chain lab; empty when it works."""
    problems = []
    running = lab_containers(lab.name, running_only=True)
    if len(running) != len(lab.nodes):
        problems.append(f"{len(running)} of {len(lab.nodes)} containers running")
    pings = [("n1", "eth1", "n2", "eth2")]
    n = len(lab.nodes)
    if n > 2:
        pings.append((f"n{n - 1}", "eth1", f"n{n}", "eth2"))
    for src, _, dst, dst_if in pings:
        address = str(lab.node(dst).interface(dst_if).ipv4.ip)
        exec_ = ["docker", "exec", lab.container_name(src)]
        if not any(_run(*exec_, "ping", "-c1", "-W2", address).returncode == 0 for _ in range(3)):
            problems.append(f"{src} cannot ping {dst} ({address})")
    mgmt = str(lab.node("n1").mgmt_ipv4.ip)
    if not any(_run("ping", "-c1", "-W2", mgmt).returncode == 0 for _ in range(3)):
        problems.append(f"hypervisor cannot ping n1's management address {mgmt}")
    return problems


def host_interfaces_of(lab: str) -> list[str]:
    links = json.loads(_run("ip", "-j", "-d", "link", "show").stdout or "[]")
    return [link["ifname"] for link in links if link.get("ifalias", "").startswith(f"ltb:{lab}:")]


def leftovers(lab: Lab) -> list[str]:
    found = [f"container {c}" for c in lab_containers(lab.name)]
    if lab.bridge in _run("ovs-vsctl", "list-br").stdout.split():
        found.append(f"bridge {lab.bridge}")
    found += [f"interface {i}" for i in host_interfaces_of(lab.name)]
    if (STATE_DIR / "labs" / lab.name).exists():
        found.append(f"state dir {STATE_DIR / 'labs' / lab.name}")
    return found


def clean(lab: Lab, prefix: str = "bench-") -> None:
    """Remove whatever a bench lab left behind (never used for timing); only labs of the
    benches' own `prefix`."""
    assert lab.name.startswith(prefix), lab.name
    containers = lab_containers(lab.name)
    if containers:
        _run("docker", "rm", "-f", *containers)
    _run("ovs-vsctl", "--if-exists", "del-br", lab.bridge)
    for interface in host_interfaces_of(lab.name):
        _run("ip", "link", "del", interface)
    _run("rm", "-rf", str(STATE_DIR / "labs" / lab.name))


def mgmt_subnet_taken(lab: Lab) -> list[str]:
    routes = json.loads(_run("ip", "-j", "route", "show", "match", str(lab.mgmt_subnet)).stdout)
    return [r["dev"] for r in routes if r.get("dst") != "default" and r["dev"] != lab.mgmt_port]


def other_containers(prefix: str) -> int:
    """Running containers of other labs: a sign of concurrent load on the machine."""
    names = _run("docker", "ps", "--format", "{{.Names}}").stdout.split()
    return sum(1 for name in names if not name.startswith(f"ltb-{prefix}-"))


# Runs -----------------------------------------------------------------------------------------


PROFILE_LINE = re.compile(r"^(?P<task>.+?) -{2,} (?P<seconds>\d+\.\d+)s\s*$")


def parse_profile(log: Path) -> list[tuple[str, float]]:
    """The profile_tasks summary at the end of an ansible-playbook log, slowest first."""
    lines = log.read_text(errors="replace").splitlines()
    tasks = []
    for line in reversed(lines):
        match = PROFILE_LINE.match(line)
        if match is None:
            if tasks:
                break
            continue
        tasks.append((match["task"].strip(), float(match["seconds"])))
    return sorted(tasks, key=lambda t: -t[1])


@dataclass
class Run:
    variant: str
    nodes: int
    repeat: int
    lab: str
    deploy: Measurement
    remove: Measurement
    started: str
    loadavg_before: list[float]
    other_containers: int
    # profile_tasks summaries: phase ("deploy", "remove") -> [(task, seconds)], slowest first
    profile: dict[str, list[tuple[str, float]]] = field(default_factory=dict)


def ltb_env(repo: Path, extra: dict[str, str], profile: bool) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(repo / "ansible.cfg"),
        PATH=f"{VENV_BIN}:{env.get('PATH', '')}",
        ANSIBLE_NOCOLOR="1",
    )
    if repo != ROOT:  # the inventory plugin imports the ltb package of the checkout
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(repo), env.get("PYTHONPATH")]))
    if profile:
        env.update(
            ANSIBLE_CALLBACKS_ENABLED="ansible.posix.profile_tasks",
            PROFILE_TASKS_TASK_OUTPUT_LIMIT="100",
        )
    env.update(extra)
    return env


class RunFailed(Exception):
    """A deploy or remove that failed or did not do its work: reported, not timed."""


def run_variant(
    variant: str, nodes: int, repeat: int, workdir: Path, args: argparse.Namespace
) -> Run:
    name = f"{args.prefix}-{LAB_KIND[variant]}-{nodes}"
    topology = write_topology(workdir, name, nodes)
    lab = load_lab(topology)
    clean(lab, f"{args.prefix}-")
    taken = mgmt_subnet_taken(lab)
    if taken:
        raise SystemExit(f"{name}: management subnet {lab.mgmt_subnet} is routed to {taken}")
    tag = f"{name}-r{repeat}"
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    loadavg = [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    others = other_containers(args.prefix)
    cwd = args.repo if variant == "ltb" else ROOT
    if variant == "ltb":
        env = ltb_env(args.repo, args.ltb_env, args.profile)
        playbook = [str(VENV_BIN / "ansible-playbook"), "-i", "inventory/", "-i", str(topology)]
        deploy_argv = [*playbook, "playbooks/deploy.yml"]
        remove_argv = [*playbook, "playbooks/remove.yml"]
    else:
        env = dict(os.environ)
        parallel = variant == "bare-parallel"
        deploy_script = workdir / f"{name}-deploy.sh"
        remove_script = workdir / f"{name}-remove.sh"
        deploy_script.write_text(bare_deploy_script(lab, topology, parallel))
        remove_script.write_text(bare_remove_script(lab, parallel))
        deploy_argv = ["bash", str(deploy_script)]
        remove_argv = ["bash", str(remove_script)]
    try:
        deploy = measure(deploy_argv, env, workdir / f"{tag}-deploy.log", cwd)
        if deploy.returncode != 0:
            raise RunFailed(f"{tag}: deploy failed ({deploy.returncode}), see {deploy.log}")
        problems = check_deployed(lab)
        if problems:
            raise RunFailed(f"{tag}: deployed lab does not work: {'; '.join(problems)}")
        remove = measure(remove_argv, env, workdir / f"{tag}-remove.log", cwd)
        if remove.returncode != 0:
            raise RunFailed(f"{tag}: remove failed ({remove.returncode}), see {remove.log}")
        left = leftovers(lab)
        if left:
            raise RunFailed(f"{tag}: remove left {', '.join(left)}")
    finally:
        clean(lab, f"{args.prefix}-")
    run = Run(variant, nodes, repeat, name, deploy, remove, started, loadavg, others)
    if variant == "ltb" and args.profile:
        run.profile = {
            phase: parse_profile(Path(m.log))
            for phase, m in (("deploy", deploy), ("remove", remove))
        }
    return run


# Report ---------------------------------------------------------------------------------------


def _median(runs: list[Run], variant: str, nodes: int, key) -> float | None:
    values = [key(r) for r in runs if r.variant == variant and r.nodes == nodes]
    return statistics.median(values) if values else None


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.1f}" if a is not None and b else "-"


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def summary(runs: list[Run], nodes: list[int], baseline: str) -> str:
    """Medians per N: wall time of deploy and remove, peak memory, CPU time of the deploy."""

    def peak(run: Run) -> float:
        return max(run.deploy.peak_mib, run.remove.peak_mib)

    columns = (  # (heading, value of a run, digits)
        ("dep s", lambda r: r.deploy.wall_s, 1),
        ("rm s", lambda r: r.remove.wall_s, 1),
        ("MiB", peak, 0),
        ("dep cpu s", lambda r: r.deploy.cpu_s, 1),
    )
    b = "bare" if baseline == "bare" else "par"
    header = f"{'N':>3}"
    for heading, _, _ in columns:
        header += f"  {'ltb ' + heading:>14}  {b + ' ' + heading:>14}  {'ratio':>5}"
    rows = [
        f"LTB vs {baseline}, medians (MiB: peak summed RSS of the process tree, "
        "deploy or remove; cpu: user+system of the process tree)",
        header,
    ]
    for n in nodes:
        row = f"{n:>3}"
        for _, value, digits in columns:
            mine = _median(runs, "ltb", n, value)
            theirs = _median(runs, baseline, n, value)
            row += f"  {_num(mine, digits):>14}  {_num(theirs, digits):>14}"
            row += f"  {_ratio(mine, theirs):>5}"
        rows.append(row)
    return "\n".join(rows)


def machine(repo: Path) -> dict[str, Any]:
    def first_line(*argv: str) -> str:
        lines = _run(*argv).stdout.splitlines()
        return lines[0] if lines else ""

    return {
        "repo": str(repo),
        # Empty for a checkout that is not a git work tree (an export): see the label.
        "commit": first_line("git", "-C", str(repo), "rev-parse", "HEAD"),
        "uncommitted_files": len(
            _run("git", "-C", str(repo), "status", "--short").stdout.splitlines()
        ),
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "ansible": first_line(str(VENV_BIN / "ansible-playbook"), "--version"),
        "docker": first_line("docker", "version", "--format", "{{.Server.Version}}"),
        "ovs": first_line("ovs-vsctl", "--version"),
        "memory_total": first_line("sh", "-c", "grep MemTotal /proc/meminfo"),
    }


def _env_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[10, 30], help="chain lengths")
    parser.add_argument("--repeat", type=int, default=1, help="repetitions of each N")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument(
        "--ltb-env",
        type=_env_pair,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment for the LTB runs, e.g. ANSIBLE_PIPELINING=true (repeatable)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="enable profile_tasks for the LTB runs"
    )
    parser.add_argument(
        "--repo",
        type=lambda text: Path(text).resolve(),
        default=ROOT,
        help="LTB checkout whose playbooks to run (default: this one), e.g. an export of a "
        "commit: git archive HEAD | tar -x -C DIR; ln -s $PWD/.collections DIR/",
    )
    parser.add_argument(
        "--prefix",
        default="bench",
        help="start of the lab names (<prefix>-chain-N, ...): give your own where others run "
        "benches on the same machine; it must start with 'bench'",
    )
    parser.add_argument("--label", default="", help="free text stored in the results")
    parser.add_argument("--keep", action="store_true", help="keep topologies, scripts and logs")
    args = parser.parse_args(argv)
    args.ltb_env = dict(args.ltb_env)
    if any(n < 2 for n in args.nodes):
        parser.error("a chain needs at least 2 nodes")
    # clean() removes whatever carries a bench lab's name: never another lab's.
    if not re.fullmatch(r"bench(-[a-z0-9]+)*", args.prefix):
        parser.error(f"--prefix {args.prefix!r}: must be 'bench' or start with 'bench-'")

    workdir = Path(tempfile.mkdtemp(prefix="ltb-bench-chain-"))
    runs: list[Run] = []
    failures: list[str] = []
    interrupted = True
    try:
        for repeat in range(1, args.repeat + 1):
            for n in args.nodes:
                for variant in args.variants:
                    try:
                        run = run_variant(variant, n, repeat, workdir, args)
                    except RunFailed as failure:
                        print(f"FAILED {failure}", flush=True)
                        failures.append(str(failure))
                        continue
                    runs.append(run)
                    print(
                        f"{variant:>13} N={n:<3} r{repeat}: deploy {run.deploy.wall_s:6.1f} s "
                        f"(cpu {run.deploy.cpu_s:5.1f} s, peak {run.deploy.peak_mib:6.0f} MiB RSS, "
                        f"{run.deploy.peak_pss_mib:5.0f} MiB PSS), "
                        f"remove {run.remove.wall_s:5.1f} s "
                        f"(peak {run.remove.peak_mib:5.0f} MiB RSS)",
                        flush=True,
                    )
        interrupted = False
    finally:
        if args.keep or interrupted or failures:
            print(f"kept {workdir} (topologies, scripts and logs)", file=sys.stderr)
        else:
            subprocess.run(["rm", "-rf", str(workdir)], check=False)
    print()
    for baseline in ("bare", "bare-parallel"):
        if "ltb" in args.variants and baseline in args.variants:
            print(summary(runs, args.nodes, baseline), end="\n\n")
    for run in runs:
        for phase, tasks in run.profile.items():
            print(f"Slowest {phase} tasks, N={run.nodes} r{run.repeat} (profile_tasks):")
            for task, seconds in tasks[:10]:
                print(f"  {seconds:7.2f} s  {task}")
            print()

    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"chain-{time.strftime('%Y%m%d-%H%M%S')}.json"
    record = {
        "label": args.label,
        "argv": sys.argv,
        "ltb_env": args.ltb_env,
        "machine": machine(args.repo),
        "runs": [asdict(run) for run in runs],
        "failures": failures,
    }
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"results: {out.relative_to(ROOT)}")
    for failure in failures:
        print(f"FAILED {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
