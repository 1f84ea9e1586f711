"""Resource usage from Prometheus (roles/platform_metrics): the lab nodes' CPU and memory
now and over the last minutes, and the hypervisors' CPU, memory and disk over hours.

A small client of Prometheus' HTTP API (`/api/v1/query`, `/api/v1/query_range`) at
LTB_PROMETHEUS_URL. When Prometheus does not answer, `MetricsUnavailable` (503) says so in
words; the API and the pages show that message, never a 500.

Who may see what is checked by the callers (portal.access): these functions take a lab the
caller may see, or are for admins only (the hypervisors).
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from apiflask import HTTPError
from flask import current_app

from store.models import Lab

# Seconds to wait for Prometheus: a page must not hang on it.
TIMEOUT = 5
# Points of a plot (query_range's step is the time span divided by this).
POINTS = 120
# The window of rate(): several scrapes at the default interval (15 s).
RATE_WINDOW = "1m"
LAB_MINUTES = 15
MAX_HOURS = 7 * 24


class MetricsUnavailable(HTTPError):
    """503: Prometheus did not answer or refused the query."""

    def __init__(self, reason: str):
        super().__init__(
            503,
            f"Resource usage is unavailable: Prometheus at {prometheus_url()} {reason}",
        )


def prometheus_url() -> str:
    return current_app.config["LTB_PROMETHEUS_URL"].rstrip("/")


def _ask(path: str, params: dict[str, str]) -> list[dict]:
    url = f"{prometheus_url()}{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as answer:  # noqa: S310 - our setting
            body = json.load(answer)
    except urllib.error.HTTPError as error:
        detail = error.read(500).decode(errors="replace")
        raise MetricsUnavailable(f"refused the query ({error.code}: {detail})") from error
    except (OSError, ValueError) as error:
        raise MetricsUnavailable(f"does not answer ({error})") from error
    if body.get("status") != "success":
        raise MetricsUnavailable(f"refused the query ({body.get('error', body)})")
    return body["data"]["result"]


def query(promql: str) -> list[tuple[dict[str, str], float]]:
    """An instant query: (labels, value) of each series."""
    return [
        (item["metric"], float(item["value"][1]))
        for item in _ask("/api/v1/query", {"query": promql})
    ]


def query_range(
    promql: str, start: datetime, end: datetime
) -> list[tuple[dict[str, str], list[tuple[datetime, float]]]]:
    """A range query of about POINTS points: (labels, [(time, value)]) of each series."""
    step = max((end - start).total_seconds() / POINTS, 1.0)
    params = {
        "query": promql,
        "start": f"{start.timestamp():.3f}",
        "end": f"{end.timestamp():.3f}",
        "step": f"{step:.3f}",
    }
    return [
        (
            item["metric"],
            [
                (datetime.fromtimestamp(float(t), UTC), float(v))
                for t, v in item["values"]
                if math.isfinite(float(v))
            ],
        )
        for item in _ask("/api/v1/query_range", params)
    ]


def promql_string(text: str) -> str:
    """`text` as a PromQL string literal (lab names are checked, but quote them anyway)."""
    return json.dumps(text)


@dataclass
class NodeUsage:
    node: str
    kind: str
    cpu_cores: float | None = None  # CPU time per second over RATE_WINDOW
    memory_bytes: float | None = None
    cpu_series: list[tuple[datetime, float]] = field(default_factory=list)
    memory_series: list[tuple[datetime, float]] = field(default_factory=list)


def _by_node(results) -> dict[tuple[str, str], object]:
    return {(labels.get("node", "?"), labels.get("kind", "?")): value for labels, value in results}


def lab_usage(lab: Lab, minutes: int = LAB_MINUTES) -> list[NodeUsage]:
    """CPU and memory of each running node of `lab` now and over the last `minutes`."""
    selector = f"{{lab={promql_string(lab.name)}}}"
    cpu = f"sum by (node, kind) (rate(ltb_node_cpu_seconds_total{selector}[{RATE_WINDOW}]))"
    memory = f"sum by (node, kind) (ltb_node_memory_bytes{selector})"
    end = datetime.now(UTC)
    start = end - timedelta(minutes=minutes)
    cpu_now, memory_now = _by_node(query(cpu)), _by_node(query(memory))
    cpu_series = _by_node(query_range(cpu, start, end))
    memory_series = _by_node(query_range(memory, start, end))
    return [
        NodeUsage(
            node,
            kind,
            cpu_now.get((node, kind)),
            memory_now.get((node, kind)),
            cpu_series.get((node, kind), []),
            memory_series.get((node, kind), []),
        )
        for node, kind in sorted(set(cpu_now) | set(memory_now) | set(memory_series))
    ]


# What the hypervisor page plots: name -> (PromQL by hypervisor, unit).
HYPERVISOR_QUERIES = {
    "cpu": (
        f'1 - avg by (hypervisor) (rate(node_cpu_seconds_total{{mode="idle"}}[{RATE_WINDOW}]))',
        "fraction",
    ),
    "memory": (
        "sum by (hypervisor) (node_memory_MemTotal_bytes - node_memory_MemAvailable_bytes)",
        "bytes",
    ),
    # The file system of / (LTB's state, images and disks live there unless moved).
    "disk": (
        'max by (hypervisor) (1 - node_filesystem_avail_bytes{mountpoint="/"}'
        ' / node_filesystem_size_bytes{mountpoint="/"})',
        "fraction",
    ),
}


@dataclass
class HypervisorUsage:
    hypervisor: str
    # name (cpu, memory, disk) -> [(time, value)]; cpu and disk as fractions, memory in bytes
    series: dict[str, list[tuple[datetime, float]]] = field(default_factory=dict)
    memory_total_bytes: float | None = None


def hypervisor_usage(hours: float) -> list[HypervisorUsage]:
    """CPU (fraction busy), memory (bytes used) and disk (fraction of / used) of every
    hypervisor over the last `hours`."""
    end = datetime.now(UTC)
    start = end - timedelta(hours=hours)
    found: dict[str, HypervisorUsage] = {}
    for name, (promql, _unit) in HYPERVISOR_QUERIES.items():
        for labels, values in query_range(promql, start, end):
            host = labels.get("hypervisor", "?")
            found.setdefault(host, HypervisorUsage(host)).series[name] = values
    for labels, total in query("sum by (hypervisor) (node_memory_MemTotal_bytes)"):
        host = labels.get("hypervisor", "?")
        found.setdefault(host, HypervisorUsage(host)).memory_total_bytes = total
    return [found[host] for host in sorted(found)]
