"""Scale benchmark: one lab of N container nodes deployed, checked end to end and removed, and
the memory an idle node costs against a bare `docker run` of the same image.

The lab is shaped like a real one: a ring of N/5 OSPF routers (`c0` ... , router i's `eth1`
linked to router i+1's `eth2`), each with four hosts on a shared segment (`c<i>h1` ...,
IPv4 and IPv6) whose default route points at their router (the shape of
tests/integration/test_large_lab.py, with a ring of any size).

1. deploy with `playbooks/deploy.yml`, measured by bench/measure.py (wall, CPU, peak MiB);
2. traffic: every link's ends ping each other (v4 and v6, all nodes in parallel), then a path
   from one end of the lab to the other (`c0h1` to a host half the ring away), timed until
   OSPF carries it;
3. after a settle time, memory per idle node: the node containers' memory cgroups (rss and
   cache), the containerd shims' RSS, and the drop of MemAvailable per node; PIDs per node;
   ovs-vswitchd's RSS and open files;
4. remove with `playbooks/remove.yml` (measured), then leftovers: containers by label, the
   bridge, hypervisor interfaces with the lab's alias, the state directory;
5. the same number of bare `docker run -d --network none IMAGE` (8 at a time), read the same
   way after the same settle time, then removed.

    .venv/bin/python bench/scale.py --nodes 200 [--settle 60] [--keep-going]

Results: a table on stdout and bench/results/scale-<timestamp>.json. Only labs named sc-<N>
and containers named sc-bare-<i> are created or removed. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import docker
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.chain import (  # noqa: E402
    STATE_DIR,
    VENV_BIN,
    clean,
    leftovers,
    ltb_env,
    machine,
)
from bench.measure import HZ, MIB, _read_pss, machine_busy_s, measure  # noqa: E402
from ltb.allocation import Registry  # noqa: E402
from ltb.model import Lab  # noqa: E402
from ltb.topology import load_lab  # noqa: E402
from tests.integration.test_large_lab import (  # noqa: E402
    DAEMONS,
    link_targets,
    pings_that_fail,
)

RESULTS = ROOT / "bench" / "results"
IMAGE = "ltb/node:latest"
HOSTS = 4  # hosts per router segment: a lab of N nodes has N / 5 routers
PARALLEL = 8  # docker execs / docker runs at once
BARE_PREFIX = "sc-bare-"
BARE_LABEL = "ltb.bench=sc-bare"


# The lab ------------------------------------------------------------------------------------


def router(i: int, ring: int) -> dict[str, Any]:
    # Hellos every second; a dead interval of 40 s keeps adjacencies up through the stalls of
    # a loaded machine (hundreds of nodes on one userspace OVS and 2 cores).
    ospf = " ip ospf network point-to-point\n ip ospf hello-interval 1\n ip ospf dead-interval 40\n"
    frr = (
        f"frr defaults traditional\nhostname c{i}\n"
        f"interface lo\n ip address 10.254.{i // 250}.{i % 250 + 1}/32\n"
        f"interface eth1\n{ospf}interface eth2\n{ospf}"
        f"router ospf\n ospf router-id 10.254.{i // 250}.{i % 250 + 1}\n passive-interface eth3\n"
        " network 10.1.0.0/16 area 0\n network 10.2.0.0/16 area 0\n network 10.254.0.0/16 area 0\n"
    )
    return {
        "interfaces": {
            "eth1": {"ipv4": f"10.1.{i}.1/24"},
            "eth2": {"ipv4": f"10.1.{(i - 1) % ring}.2/24"},
            "eth3": {"ipv4": f"10.2.{i}.1/24", "ipv6": f"2001:db8:2:{i}::1/64"},
        },
        "files": {"/etc/frr/daemons": DAEMONS, "/etc/frr/frr.conf": frr},
    }


def host(i: int, h: int) -> dict[str, Any]:
    return {
        "interfaces": {
            "eth1": {"ipv4": f"10.2.{i}.1{h}/24", "ipv6": f"2001:db8:2:{i}::1{h}/64"},
        },
        "files": {"/etc/ltb/startup.sh": f"ip route add 10.0.0.0/8 via 10.2.{i}.1\n"},
    }


def scale_topology(name: str, nodes: int) -> dict[str, Any]:
    ring = nodes // (1 + HOSTS)
    if ring * (1 + HOSTS) != nodes or not 3 <= ring <= 250:
        raise SystemExit(f"--nodes {nodes}: must be 5 x (3 to 250) routers")
    topology: dict[str, Any] = {
        "name": name,
        "description": f"a ring of {ring} OSPF routers, {HOSTS} hosts on each one's segment",
        "nodes": {},
        "links": [],
    }
    for i in range(ring):
        topology["nodes"][f"c{i}"] = router(i, ring)
        topology["links"].append({"endpoints": [f"c{i}:eth1", f"c{(i + 1) % ring}:eth2"]})
        hosts = [f"c{i}h{h}" for h in range(1, HOSTS + 1)]
        for h, node in enumerate(hosts, start=1):
            topology["nodes"][node] = host(i, h)
        topology["links"].append({"endpoints": [f"c{i}:eth3", *(f"{n}:eth1" for n in hosts)]})
    return topology


# Readings -----------------------------------------------------------------------------------


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def meminfo(key: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def cgroup_dir(pid: int, controller: str) -> Path:
    """The cgroup directory of a process for a v1 controller (or the v2 unified one)."""
    unified = None
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return Path("/sys/fs/cgroup") / controller / path.lstrip("/")
        if controllers == "":
            unified = Path("/sys/fs/cgroup") / path.lstrip("/")
    if unified is None:
        raise LookupError(f"no {controller} cgroup for PID {pid}")
    return unified


def container_usage(pid: int) -> dict[str, int]:
    """Memory (bytes: rss = anonymous, cache = page cache, usage = both and kernel) and PIDs
    of a container, from its cgroups."""
    memory = cgroup_dir(pid, "memory")
    stat = dict(
        (key, int(value))
        for key, value in (
            line.split() for line in (memory / "memory.stat").read_text().splitlines()
        )
    )
    if "total_rss" in stat:  # cgroup v1
        usage = int((memory / "memory.usage_in_bytes").read_text())
        rss, cache = stat["total_rss"], stat["total_cache"]
    else:  # cgroup v2
        usage = int((memory / "memory.current").read_text())
        rss, cache = stat["anon"], stat["file"]
    pids = int((cgroup_dir(pid, "pids") / "pids.current").read_text())
    return {"usage": usage, "rss": rss, "cache": cache, "pids": pids}


def process_rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except FileNotFoundError:
        pass
    return 0


def shim_memory(container_pids: list[int]) -> list[tuple[int, int]]:
    """RSS and PSS of the containerd shim (parent of each container's init) of each one."""
    parents = []
    for pid in container_pids:
        stat = Path(f"/proc/{pid}/stat").read_text()
        parents.append(int(stat.rsplit(")", 1)[1].split()[1]))
    return [(process_rss(p), _read_pss(p)) for p in parents]


def container_cpu_s(pid: int) -> float:
    """CPU seconds a container has used, from its cgroup (v1 cpuacct, or v2 cpu.stat)."""
    cgroup = cgroup_dir(pid, "cpuacct")
    if (cgroup / "cpuacct.usage").exists():
        return int((cgroup / "cpuacct.usage").read_text()) / 1e9
    stat = (cgroup / "cpu.stat").read_text().split()
    return int(stat[stat.index("usage_usec") + 1]) / 1e6


def ovs_vswitchd_cpu_s() -> float:
    pid = _run("pidof", "ovs-vswitchd").stdout.split()[0]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ


def ovs_vswitchd() -> dict[str, int]:
    pid = int(_run("pidof", "ovs-vswitchd").stdout.split()[0])
    return {"rss": process_rss(pid), "open_files": len(os.listdir(f"/proc/{pid}/fd"))}


def threads_on_machine() -> int:
    return int(Path("/proc/loadavg").read_text().split()[3].split("/")[1])


def idle_reading(containers: list[Any], settle: float, mem_before: int) -> dict[str, Any]:
    """What N containers cost once idle: per-node medians and sums of their cgroups, their
    shims, and the machine's MemAvailable drop per container since `mem_before`; and the CPU
    the idle containers and ovs-vswitchd take during the settle time."""
    pids = []
    for container in containers:
        container.reload()
        pids.append(container.attrs["State"]["Pid"])
    cpu_before = [container_cpu_s(pid) for pid in pids]
    ovs_before, busy_before = ovs_vswitchd_cpu_s(), machine_busy_s()
    time.sleep(settle)
    idle_cpu = {
        "containers_cores": round(
            sum(container_cpu_s(pid) - b for pid, b in zip(pids, cpu_before, strict=True)) / settle,
            3,
        ),
        "ovs_vswitchd_cores": round((ovs_vswitchd_cpu_s() - ovs_before) / settle, 3),
        "machine_busy_cores": round((machine_busy_s() - busy_before) / settle, 3),
    }
    usages = [container_usage(pid) for pid in pids]
    shims = shim_memory(pids)
    n = len(containers)

    def per_node(values: list[int]) -> dict[str, float]:
        ordered = sorted(values)
        return {
            "median_mib": round(ordered[n // 2] / MIB, 2),
            "max_mib": round(ordered[-1] / MIB, 2),
            "mean_mib": round(sum(values) / n / MIB, 2),
        }

    available_drop = mem_before - meminfo("MemAvailable")
    # Routers (c<i>) run FRR, hosts (c<i>h<j>) only sshd: their means apart.
    routers = [
        u["usage"]
        for c, u in zip(containers, usages, strict=True)
        if re.fullmatch(r"c\d+", c.labels.get("ltb.node", ""))
    ]
    return {
        "idle_cpu": idle_cpu,
        "routers_cgroup_usage_mean_mib": round(sum(routers) / len(routers) / MIB, 2)
        if routers
        else None,
        "containers": n,
        "settle_s": settle,
        "cgroup_usage": per_node([u["usage"] for u in usages]),
        "cgroup_rss": per_node([u["rss"] for u in usages]),
        "cgroup_cache": per_node([u["cache"] for u in usages]),
        "pids_per_node": round(sum(u["pids"] for u in usages) / n, 2),
        "shim_rss": per_node([rss for rss, _ in shims]),
        # A shim's RSS is mostly its binary's pages, shared by all shims: PSS counts them once.
        "shim_pss": per_node([pss for _, pss in shims]),
        "mem_available_drop_per_node_mib": round(available_drop / n / MIB, 2),
        "mem_available_mib": round(meminfo("MemAvailable") / MIB),
        "threads_on_machine": threads_on_machine(),
        "ovs_vswitchd": ovs_vswitchd(),
    }


# LTB ----------------------------------------------------------------------------------------


def traffic(lab: Lab, client: docker.DockerClient) -> dict[str, Any]:
    """Every link's ends ping each other (all nodes at once, 8 docker execs at a time), and
    those that did not answer once more after 5 s; then the path across the ring, polled until
    OSPF carries it."""
    targets = link_targets(lab)
    started = time.monotonic()

    def tentative(node: str) -> int:
        """IPv6 addresses of a node still in duplicate address detection (not usable yet)."""
        container = client.containers.get(lab.container_name(node))
        return len(
            container.exec_run(["ip", "-6", "-o", "addr", "show", "tentative"])[1].splitlines()
        )

    def ping_from(node: str) -> list[str]:
        return pings_that_fail(client.containers.get(lab.container_name(node)), targets[node])

    def ping_again(node: str) -> list[str]:
        return pings_that_fail(client.containers.get(lab.container_name(node)), failed[node])

    with ThreadPoolExecutor(PARALLEL) as pool:
        tentative_after_deploy = sum(pool.map(tentative, targets))
        failed = dict(zip(targets, pool.map(ping_from, targets), strict=True))
        failed = {node: f for node, f in failed.items() if f}
        links_s = time.monotonic() - started
        time.sleep(5 if failed else 0)
        again = dict(zip(failed, pool.map(ping_again, failed), strict=True))
    again = {node: f for node, f in again.items() if f}
    result = {
        "link_pings": sum(len(t) for t in targets.values()),
        "ipv6_tentative_after_deploy": tentative_after_deploy,
        "link_pings_failed_first": failed,
        "link_pings_failed": again,
        "link_pings_s": round(links_s, 1),
    }

    ring = len(lab.nodes) // (1 + HOSTS)
    far = f"10.2.{ring // 2}.1{HOSTS}"  # the last host of the router half the ring away
    started = time.monotonic()
    source = client.containers.get(lab.container_name("c0h1"))
    path_s, routers = None, None
    while time.monotonic() - started < 300:
        code, output = source.exec_run(["ping", "-c", "1", "-W", "2", far])
        if code == 0:
            path_s = time.monotonic() - started
            # The far host answers with TTL 64, less one per router on the way back.
            ttl = re.search(rb"ttl=(\d+)", output)
            routers = 64 - int(ttl[1]) if ttl else None
            break
        time.sleep(1)
    return {
        **result,
        "path": f"c0h1 -> {far}",
        "path_after_s": None if path_s is None else round(path_s, 1),
        "path_routers": routers,
    }


def run_ltb(nodes: int, settle: float, workdir: Path, client: docker.DockerClient) -> dict:
    name = f"sc-{nodes}"
    topology = workdir / f"{name}.lab.yml"
    topology.write_text(yaml.safe_dump(scale_topology(name, nodes), sort_keys=False))
    lab = load_lab(topology)
    clean(lab, prefix="sc-")
    env = ltb_env(ROOT, {}, profile=False)
    playbook = [str(VENV_BIN / "ansible-playbook"), "-i", "inventory/", "-i", str(topology)]
    result: dict[str, Any] = {"lab": name, "nodes": nodes, "loadavg_before": loadavg()}
    mem_before = meminfo("MemAvailable")
    result["before"] = {"threads_on_machine": threads_on_machine(), "ovs_vswitchd": ovs_vswitchd()}
    try:
        deploy = measure([*playbook, "playbooks/deploy.yml"], env, workdir / "deploy.log", ROOT)
        result["deploy"] = asdict(deploy)
        result["loadavg_after_deploy"] = loadavg()
        if deploy.returncode != 0:
            result["failed"] = f"deploy failed ({deploy.returncode}), see {deploy.log}"
            return result
        lab = load_lab(topology, Registry(STATE_DIR).allocate)  # the deploy's allocation
        containers = client.containers.list(filters={"label": f"ltb.lab={name}"})
        result["running"] = len(containers)
        result["traffic"] = traffic(lab, client)
        result["idle"] = idle_reading(containers, settle, mem_before)
        remove = measure([*playbook, "playbooks/remove.yml"], env, workdir / "remove.log", ROOT)
        result["remove"] = asdict(remove)
        result["leftovers"] = leftovers(lab)
    finally:
        clean(lab, prefix="sc-")
    return result


# Bare ---------------------------------------------------------------------------------------


def run_bare(nodes: int, settle: float, client: docker.DockerClient) -> dict[str, Any]:
    remove_bare()
    mem_before = meminfo("MemAvailable")
    names = [f"{BARE_PREFIX}{i}" for i in range(nodes)]

    def start(name: str) -> int:
        argv = ["docker", "run", "-d", "--network", "none", "--name", name, "--label"]
        return _run(*argv, BARE_LABEL, IMAGE).returncode

    started = time.monotonic()
    try:
        with ThreadPoolExecutor(PARALLEL) as pool:
            codes = list(pool.map(start, names))
        result: dict[str, Any] = {"run_s": round(time.monotonic() - started, 1)}
        result["failed_runs"] = sum(1 for c in codes if c != 0)
        containers = client.containers.list(filters={"label": BARE_LABEL})
        result["idle"] = idle_reading(containers, settle, mem_before)
    finally:
        started = time.monotonic()
        remove_bare()
        result["remove_s"] = round(time.monotonic() - started, 1)
    return result


def remove_bare() -> None:
    ids = _run("docker", "ps", "-aq", "--filter", f"label={BARE_LABEL}").stdout.split()
    if ids:
        _run("docker", "rm", "-f", *ids)


# Report -------------------------------------------------------------------------------------


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def largest(ltb: dict[str, Any], total_available_mib: float) -> dict[str, Any]:
    """How many nodes this machine holds, from the measured per-node cost and what limits."""
    idle = ltb["idle"]
    per_node_mib = max(
        idle["mem_available_drop_per_node_mib"],
        idle["cgroup_usage"]["mean_mib"] + idle["shim_pss"]["mean_mib"],
    )
    threads_per_node = (idle["threads_on_machine"] - ltb["before"]["threads_on_machine"]) / ltb[
        "nodes"
    ]
    ovs_files_per_node = (
        idle["ovs_vswitchd"]["open_files"] - ltb["before"]["ovs_vswitchd"]["open_files"]
    ) / ltb["nodes"]
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    ovs_pid = _run("pidof", "ovs-vswitchd").stdout.split()[0]
    ovs_nofile = next(
        int(line.split()[3])
        for line in Path(f"/proc/{ovs_pid}/limits").read_text().splitlines()
        if line.startswith("Max open files")
    )
    limits = {
        "memory (MemAvailable before deploy / per node)": int(total_available_mib / per_node_mib),
        "PIDs (pid_max / threads per node)": int(pid_max / threads_per_node)
        if threads_per_node > 0
        else None,
        "ovs-vswitchd open files (limit / files per node)": int(ovs_nofile / ovs_files_per_node)
        if ovs_files_per_node > 0
        else None,
        # The default subnet of a lab (ltb.model); a topology's mgmt.ipv4_subnet may be larger.
        "nodes per lab in the default management /24": 253,
    }
    return {
        "per_node_mib": round(per_node_mib, 2),
        "threads_per_node": round(threads_per_node, 2),
        "ovs_open_files_per_node": round(ovs_files_per_node, 2),
        "pid_max": pid_max,
        "ovs_nofile": ovs_nofile,
        "limits": limits,
    }


def table(report: dict[str, Any]) -> str:
    ltb, bare = report["ltb"], report.get("bare")
    lines = [f"N={ltb['nodes']} load before {ltb['loadavg_before']}"]
    if "deploy" in ltb:
        d = ltb["deploy"]
        lines.append(
            f"deploy: {d['wall_s']:.1f} s, cpu {d['cpu_s']:.1f} s, peak {d['peak_mib']:.0f} MiB "
            f"(PSS {d['peak_pss_mib']:.0f}), machine cpu {d['machine_cpu_s']:.0f} s"
        )
    if "traffic" in ltb:
        t = ltb["traffic"]
        lines.append(
            f"traffic: {t['link_pings']} link pings in {t['link_pings_s']} s, "
            f"failed {sum(len(f) for f in t['link_pings_failed_first'].values())} at first, "
            f"{sum(len(f) for f in t['link_pings_failed'].values())} 5 s later "
            f"({t['ipv6_tentative_after_deploy']} IPv6 addresses tentative after the deploy); "
            f"path {t['path']} after {t['path_after_s']} s, {t['path_routers']} routers on the way"
        )
    if "remove" in ltb:
        r = ltb["remove"]
        lines.append(
            f"remove: {r['wall_s']:.1f} s, cpu {r['cpu_s']:.1f} s, peak {r['peak_mib']:.0f} MiB;"
            f" leftovers: {ltb['leftovers'] or 'none'}"
        )
    if "failed" in ltb:
        lines.append(f"FAILED: {ltb['failed']}")
    rows = [("LTB node", ltb.get("idle"))] + ([("bare docker run", bare["idle"])] if bare else [])
    lines.append(
        "| per idle node (MiB, median) | cgroup usage | rss | cache | shim rss | shim pss | "
        "MemAvailable drop | PIDs |"
    )
    lines.append("|---|---|---|---|---|---|---|---|")
    for label, idle in rows:
        if idle:
            lines.append(
                f"| {label} | {idle['cgroup_usage']['median_mib']} | "
                f"{idle['cgroup_rss']['median_mib']} | {idle['cgroup_cache']['median_mib']} | "
                f"{idle['shim_rss']['median_mib']} | {idle['shim_pss']['median_mib']} | "
                f"{idle['mem_available_drop_per_node_mib']} | "
                f"{idle['pids_per_node']} |"
            )
    for label, idle in rows:
        if idle:
            lines.append(f"idle CPU, {label} (cores): {json.dumps(idle['idle_cpu'])}")
    if "largest" in report:
        lines.append(f"largest: {json.dumps(report['largest'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=200, help="5 x routers (default 200)")
    parser.add_argument("--settle", type=float, default=60, help="idle seconds before reading")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare docker runs")
    args = parser.parse_args(argv)
    client = docker.from_env(timeout=120)
    report: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "uptime": _run("uptime").stdout.strip(),
        "machine": machine(ROOT),
        "other_containers": len(client.containers.list()),
        "mem_available_mib": round(meminfo("MemAvailable") / MIB),
    }
    workdir = Path(tempfile.mkdtemp(prefix="sc-"))  # kept: topology and playbook logs
    report["workdir"] = str(workdir)
    report["ltb"] = run_ltb(args.nodes, args.settle, workdir, client)
    if "idle" in report["ltb"]:
        report["largest"] = largest(report["ltb"], report["mem_available_mib"])
    if not args.no_bare:
        report["bare"] = run_bare(args.nodes, args.settle, client)
    report["uptime_after"] = _run("uptime").stdout.strip()
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"scale-{args.nodes}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    print(f"results: {out}")
    ltb = report["ltb"]
    ok = (
        "failed" not in ltb
        and not ltb.get("traffic", {}).get("link_pings_failed")
        and ltb.get("traffic", {}).get("path_after_s") is not None
        and ltb.get("leftovers") == []
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
