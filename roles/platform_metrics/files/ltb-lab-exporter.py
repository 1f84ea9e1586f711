#!/usr/bin/python3
"""LTB's lab exporter: CPU, memory and network of every lab node on this hypervisor, for
Prometheus (GET /metrics).

Self-contained (Python's standard library only, no LTB package, no venv), so it runs on any
hypervisor that has the platform's packages. At each scrape it reads:
- containers: those Docker labels `ltb.lab` / `ltb.node` (roles/container_node), listed over
  Docker's unix socket; CPU and memory from their cgroup (v1 or v2, found once per container
  from /proc/<pid>/cgroup), network from /proc/<pid>/net/dev (the node's own namespace);
- VMs: `virsh domstats --raw` of the domains named `ltb-*`; lab and node from the domain's
  LTB metadata (roles/vm_node), read once per domain.

    ltb-lab-exporter.py --listen 127.0.0.1:9843 [--docker /var/run/docker.sock]
                        [--libvirt qemu:///system]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CGROUP_ROOT = "/sys/fs/cgroup"
LTB_METADATA = "https://ltb.invalid/libvirt/1"
VM_PREFIX = "ltb-"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class NodeUsage:
    lab: str
    node: str
    kind: str
    cpu_seconds: float | None = None
    memory_bytes: float | None = None
    # interface -> (received bytes, sent bytes)
    network: dict[str, tuple[float, float]] = field(default_factory=dict)


# --- containers ------------------------------------------------------------------------


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 5):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def docker_get(socket_path: str, path: str):
    connection = UnixHTTPConnection(socket_path)
    try:
        connection.request("GET", path)
        answer = connection.getresponse()
        body = answer.read()
        if answer.status != 200:
            raise OSError(f"Docker answered {answer.status} to {path}: {body[:200]!r}")
        return json.loads(body)
    finally:
        connection.close()


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """/proc/<pid>/cgroup -> {controller: path}; cgroup v2's unified line is under ''."""
    paths = {}
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller.removeprefix("name=")] = path
    return paths


def read_number(path: str) -> float | None:
    try:
        with open(path) as file:
            return float(file.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def read_keyed(path: str) -> dict[str, float]:
    """A cgroup file of `key value` lines (cpu.stat, memory.stat)."""
    try:
        with open(path) as file:
            pairs = (line.split() for line in file)
            return {p[0]: float(p[1]) for p in pairs if len(p) == 2}
    except (OSError, ValueError):
        return {}


def parse_net_dev(text: str) -> dict[str, tuple[float, float]]:
    """/proc/<pid>/net/dev -> {interface: (received bytes, sent bytes)}, without lo."""
    found = {}
    for line in text.splitlines()[2:]:
        name, _, numbers = line.partition(":")
        fields = numbers.split()
        if name.strip() and name.strip() != "lo" and len(fields) >= 9:
            found[name.strip()] = (float(fields[0]), float(fields[8]))
    return found


def container_cgroup_usage(paths: dict[str, str]) -> tuple[float | None, float | None]:
    """CPU seconds and memory bytes (working set: usage less inactive file pages, as
    `docker stats` counts) from the container's cgroup, v2 or v1."""
    if "" in paths and os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers")):
        base = CGROUP_ROOT + paths[""]
        cpu = read_keyed(f"{base}/cpu.stat").get("usage_usec")
        memory = read_number(f"{base}/memory.current")
        inactive = read_keyed(f"{base}/memory.stat").get("inactive_file", 0)
        return (
            cpu / 1e6 if cpu is not None else None,
            max(memory - inactive, 0) if memory is not None else None,
        )
    cpu = None
    for mount in ("cpuacct", "cpu,cpuacct"):  # separate or joint mounts, as distributions do
        if cpu is None and "cpuacct" in paths:
            cpu = read_number(f"{CGROUP_ROOT}/{mount}{paths['cpuacct']}/cpuacct.usage")
    memory = inactive = None
    if "memory" in paths:
        base = f"{CGROUP_ROOT}/memory{paths['memory']}"
        memory = read_number(f"{base}/memory.usage_in_bytes")
        inactive = read_keyed(f"{base}/memory.stat").get("total_inactive_file", 0)
    return (
        cpu / 1e9 if cpu is not None else None,
        max(memory - inactive, 0) if memory is not None else None,
    )


class Containers:
    """LTB's running containers; the pid of each is asked once (cached by container id)."""

    def __init__(self, socket_path: str):
        self.socket_path = socket_path
        self.pids: dict[str, int] = {}

    def usage(self) -> list[NodeUsage]:
        query = '{"label":["ltb.lab","ltb.node"],"status":["running"]}'
        listed = docker_get(self.socket_path, f"/containers/json?filters={query}")
        self.pids = {c["Id"]: self.pids[c["Id"]] for c in listed if c["Id"] in self.pids}
        found = []
        for container in listed:
            labels = container.get("Labels") or {}
            node = NodeUsage(labels["ltb.lab"], labels["ltb.node"], "container")
            try:
                pid = self.pid(container["Id"])
                with open(f"/proc/{pid}/cgroup") as file:
                    node.cpu_seconds, node.memory_bytes = container_cgroup_usage(
                        parse_proc_cgroup(file.read())
                    )
                with open(f"/proc/{pid}/net/dev") as file:
                    node.network = parse_net_dev(file.read())
            except (OSError, KeyError, ValueError):
                self.pids.pop(container["Id"], None)  # ended meanwhile: ask again next time
            found.append(node)
        return found

    def pid(self, container_id: str) -> int:
        if container_id not in self.pids:
            details = docker_get(self.socket_path, f"/containers/{container_id}/json")
            self.pids[container_id] = int(details["State"]["Pid"])
        return self.pids[container_id]


# --- virtual machines ------------------------------------------------------------------


def parse_domstats(text: str) -> dict[str, dict[str, str]]:
    """`virsh domstats --raw` -> {domain: {key: value}}."""
    domains: dict[str, dict[str, str]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        heading = re.fullmatch(r"Domain: '(.*)'", line)
        if heading:
            current = domains.setdefault(heading.group(1), {})
        elif current is not None and "=" in line:
            key, _, value = line.partition("=")
            current[key] = value
    return domains


def vm_usage_of(stats: dict[str, str]) -> tuple[float | None, float | None, dict]:
    """CPU seconds, memory bytes (the QEMU process' resident memory) and network of a
    domain's statistics."""
    cpu = float(stats["cpu.time"]) / 1e9 if "cpu.time" in stats else None
    memory = float(stats["balloon.rss"]) * 1024 if "balloon.rss" in stats else None
    network = {}
    for index in range(int(stats.get("net.count", 0))):
        name = stats.get(f"net.{index}.name", f"net{index}")
        received = float(stats.get(f"net.{index}.rx.bytes", 0))
        network[name] = (received, float(stats.get(f"net.{index}.tx.bytes", 0)))
    return cpu, memory, network


def parse_ltb_metadata(text: str) -> tuple[str, str] | None:
    try:
        # The metadata element is written by roles/vm_node, not by lab users.
        element = ET.fromstring(text)  # noqa: S314
    except ET.ParseError:
        return None
    lab, node = element.get("lab"), element.get("node")
    return (lab, node) if lab and node else None


class Machines:
    """LTB's running VMs; the lab and node of each domain are read once (cached by name)."""

    def __init__(self, uri: str):
        self.uri = uri
        self.owners: dict[str, tuple[str, str] | None] = {}

    def virsh(self, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["virsh", "-q", "-c", self.uri, *argv],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )

    def usage(self) -> list[NodeUsage]:
        done = self.virsh("domstats", "--raw", "--list-running", "--cpu-total", "--balloon",
                          "--interface")  # fmt: skip
        if done.returncode != 0:
            raise OSError(f"virsh domstats failed: {done.stderr.strip()}")
        domains = {n: s for n, s in parse_domstats(done.stdout).items() if n.startswith(VM_PREFIX)}
        self.owners = {n: o for n, o in self.owners.items() if n in domains}
        found = []
        for name, stats in domains.items():
            owner = self.owner(name)
            if owner is None:
                continue  # not a domain of LTB's
            node = NodeUsage(owner[0], owner[1], "vm")
            node.cpu_seconds, node.memory_bytes, node.network = vm_usage_of(stats)
            found.append(node)
        return found

    def owner(self, domain: str) -> tuple[str, str] | None:
        if domain not in self.owners:
            done = self.virsh("metadata", domain, "--uri", LTB_METADATA)
            self.owners[domain] = parse_ltb_metadata(done.stdout) if done.returncode == 0 else None
        return self.owners[domain]


# --- exposition ------------------------------------------------------------------------


def label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def labels_text(**labels: str) -> str:
    return ",".join(f'{k}="{label_value(v)}"' for k, v in labels.items())


def exposition(nodes: list[NodeUsage], errors: dict[str, int], seconds: float) -> str:
    """The Prometheus text format of these nodes' usage."""
    lines = [
        "# HELP ltb_node_cpu_seconds_total CPU time used by a lab node",
        "# TYPE ltb_node_cpu_seconds_total counter",
    ]
    lines += [
        f"ltb_node_cpu_seconds_total{{{labels_text(lab=n.lab, node=n.node, kind=n.kind)}}} "
        f"{n.cpu_seconds:.6f}"
        for n in nodes
        if n.cpu_seconds is not None
    ]
    lines += [
        "# HELP ltb_node_memory_bytes Memory used by a lab node (container: working set; "
        "VM: resident memory of its QEMU process)",
        "# TYPE ltb_node_memory_bytes gauge",
    ]
    lines += [
        f"ltb_node_memory_bytes{{{labels_text(lab=n.lab, node=n.node, kind=n.kind)}}} "
        f"{n.memory_bytes:.0f}"
        for n in nodes
        if n.memory_bytes is not None
    ]
    for direction, index, verb in (("receive", 0, "received"), ("transmit", 1, "sent")):
        metric = f"ltb_node_network_{direction}_bytes_total"
        lines += [
            f"# HELP {metric} Bytes {verb} on an interface of a lab node",
            f"# TYPE {metric} counter",
        ]
        lines += [
            f"{metric}{{{labels_text(lab=n.lab, node=n.node, kind=n.kind, interface=i)}}} "
            f"{counts[index]:.0f}"
            for n in nodes
            for i, counts in sorted(n.network.items())
        ]
    lines += [
        "# HELP ltb_lab_exporter_errors_total Scrapes whose source (docker, libvirt) failed",
        "# TYPE ltb_lab_exporter_errors_total counter",
    ]
    lines += [
        f'ltb_lab_exporter_errors_total{{source="{s}"}} {count}' for s, count in errors.items()
    ]
    lines += [
        "# HELP ltb_lab_exporter_scrape_seconds Time to read the nodes' usage",
        "# TYPE ltb_lab_exporter_scrape_seconds gauge",
        f"ltb_lab_exporter_scrape_seconds {seconds:.6f}",
    ]
    return "\n".join(lines) + "\n"


class Exporter:
    def __init__(self, docker_socket: str, libvirt_uri: str):
        self.sources = {}
        if docker_socket:
            self.sources["docker"] = Containers(docker_socket)
        if libvirt_uri and shutil.which("virsh"):
            self.sources["libvirt"] = Machines(libvirt_uri)
        self.errors = dict.fromkeys(self.sources, 0)

    def scrape(self) -> str:
        started = time.perf_counter()
        nodes: list[NodeUsage] = []
        for name, source in self.sources.items():
            try:
                nodes += source.usage()
            except (OSError, ValueError, KeyError, subprocess.SubprocessError) as error:
                # A source that is down (no dockerd, no libvirtd) leaves the other's numbers.
                self.errors[name] += 1
                print(f"ltb-lab-exporter: {name}: {error}", file=sys.stderr, flush=True)
        return exposition(nodes, self.errors, time.perf_counter() - started)


def serve(exporter: Exporter, host: str, port: int) -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404, "Only /metrics is served here")
                return
            body = exporter.scrape().encode()
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass  # one line per scrape would fill the log

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:9843", help="address:port to serve")
    parser.add_argument("--docker", default="/var/run/docker.sock", help="Docker's socket")
    parser.add_argument("--libvirt", default="qemu:///system", help="libvirt URI ('' for none)")
    parser.add_argument("--once", action="store_true", help="print one scrape and exit")
    options = parser.parse_args(argv)
    exporter = Exporter(options.docker, options.libvirt)
    if options.once:
        sys.stdout.write(exporter.scrape())
        return
    host, _, port = options.listen.rpartition(":")
    serve(exporter, host.strip("[]"), int(port))


if __name__ == "__main__":
    main()
