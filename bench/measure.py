"""How much CPU and memory a run takes: the process tree of a command, sampled from /proc.

One way of measuring for every bench (chain.py, vm.py, jobs.py, mirror.py), so their numbers
compare: `measure(argv, ...)` runs a command to its end and reports its wall time, CPU time
(getrusage of the whole tree: user + system) and peak memory (the sampled sum of the tree's
RSS every 50 ms, PSS every 0.5 s); `Watch(pids)` samples the trees of processes that are
already running (rq workers, a capture) between its start and stop, for work that is not one
command. dockerd, containerd, libvirtd, QEMU and the OVS daemons are not in any tree: work
done for a run by the platform's daemons is counted only in `machine_cpu_s`.

    from bench.measure import measure, Watch
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SAMPLE_INTERVAL = 0.05
PSS_EVERY = 10  # PSS every 0.5 s
PAGE = os.sysconf("SC_PAGE_SIZE")
HZ = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024


@dataclass(frozen=True)
class ProcStat:
    comm: bytes
    ppid: int
    cpu_ticks: int  # user + system
    children_ticks: int  # user + system of its children that ended and were waited for
    rss: int  # bytes


def _read_stat(pid: str) -> ProcStat | None:
    """What /proc/PID/stat says of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read()
        head, tail = text.rsplit(b")", 1)
        fields = tail.split()
        return ProcStat(
            comm=head.split(b"(", 1)[1],
            ppid=int(fields[1]),
            cpu_ticks=int(fields[11]) + int(fields[12]),
            children_ticks=int(fields[13]) + int(fields[14]),
            rss=int(fields[21]) * PAGE,
        )
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return None


ANSIBALLZ = re.compile(rb"AnsiballZ_(\w+)\.py")


def process_kind(pid: int, root: bool, comm: bytes) -> str:
    """What a process of the tree is, for the CPU breakdown."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            argv = cmdline.read()
    except (FileNotFoundError, ProcessLookupError):
        argv = b""
    if b"ansible-playbook" in argv:
        return "ansible-playbook (main)" if root else "ansible-playbook (workers)"
    module = ANSIBALLZ.search(argv)
    if module:
        return f"module {module[1].decode()}"
    if comm.startswith(b"python"):
        return "python (other, e.g. pipelined modules)"
    return comm.decode(errors="replace")


def _read_pss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as rollup:
            for line in rollup:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


class TreeSampler:
    """Memory and CPU of processes (the roots) and all their descendants, sampled from /proc.

    Only new processes and members of the tree are read at each sample: a process that was
    not in the tree when first seen cannot join it later (its parent does not change to one of
    ours), so the cost per sample follows the size of the tree, not of the machine.
    The CPU time of each process is attributed to its kind (`process_kind`) as last sampled:
    what a process does in its last 50 ms is missed, so the kinds add up to less than getrusage.
    The tree's whole CPU time (`tree_ticks`) misses nothing that was waited for inside the tree:
    a process that ends adds its own and its children's time to its parent's.
    """

    def __init__(self, *roots: int):
        self.roots = set(roots)
        self.tree: dict[int, tuple[bytes, str]] = dict.fromkeys(
            roots, (b"", "")
        )  # pid -> (comm, kind)
        self.outside: set[int] = set()
        self.cpu_ticks: dict[int, tuple[str, int]] = {}  # pid -> (kind, ticks), kept after exit
        self.tree_ticks = 0  # CPU ticks of the live tree and what it waited for, last sample

    def sample(self, pss: bool) -> tuple[int, int, int]:
        """(summed RSS, summed PSS or 0, process count) of the tree now."""
        stats: dict[int, ProcStat] = {}
        new: dict[int, int] = {}  # pid -> parent, of processes first seen now
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            if pid in self.outside:
                continue
            stat = _read_stat(entry.name)
            if stat is None:
                continue
            stats[pid] = stat
            if pid not in self.tree:
                new[pid] = stat.ppid
        grown = True
        while grown:  # a parent may be among the new processes, listed after its child
            joined = [pid for pid, parent in new.items() if parent in self.tree]
            for pid in joined:
                self.tree[pid] = (b"", "")
                del new[pid]
            grown = bool(joined)
        self.outside.update(new)
        self.tree = {pid: known for pid, known in self.tree.items() if pid in stats}
        for pid, (comm, kind) in self.tree.items():
            stat = stats[pid]
            if stat.comm != comm:  # new, or it has run exec since the last sample
                kind = process_kind(pid, pid in self.roots, stat.comm)
                self.tree[pid] = (stat.comm, kind)
            self.cpu_ticks[pid] = (kind, stat.cpu_ticks)
        self.tree_ticks = sum(stats[p].cpu_ticks + stats[p].children_ticks for p in self.tree)
        total_pss = sum(_read_pss(pid) for pid in self.tree) if pss else 0
        return sum(stats[pid].rss for pid in self.tree), total_pss, len(self.tree)

    def cpu_by_kind(self) -> dict[str, float]:
        """Sampled CPU seconds per kind of process, largest first."""
        totals: dict[str, int] = {}
        for kind, ticks in self.cpu_ticks.values():
            totals[kind] = totals.get(kind, 0) + ticks
        return {k: round(t / HZ, 2) for k, t in sorted(totals.items(), key=lambda kt: -kt[1])}


@dataclass
class Measurement:
    argv: list[str]
    returncode: int
    wall_s: float
    # Peak memory of the process tree: max(sampled summed RSS, largest single process). The
    # second term covers processes shorter than a sampling interval (e.g. one docker CLI).
    peak_mib: float
    peak_rss_mib: float  # peak of the sampled summed RSS of the process tree
    peak_pss_mib: float  # peak of the summed PSS (shared pages counted once), every 0.5 s
    peak_processes: int
    max_single_rss_mib: float  # getrusage: the largest single process that was reaped
    # CPU time (user + system) of the process tree, from getrusage: less sensitive than wall
    # time to other load on the machine. Work done by dockerd, containerd and OVS is not in it.
    cpu_s: float
    # Busy CPU time of the whole machine during the run (/proc/stat): cpu_s, the daemons'
    # work for it, the sampler, and whatever else runs on the machine.
    machine_cpu_s: float
    cpu_by_kind: dict[str, float]  # sampled CPU seconds per kind of process (TreeSampler)
    samples: int
    sampler_cpu_s: float
    log: str


def machine_busy_s() -> float:
    """CPU seconds the machine has spent busy (not idle or waiting for I/O) since boot."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / HZ


def measure(
    argv: list[str], env: dict[str, str], log: Path, cwd: Path, stderr_log: Path | None = None
) -> Measurement:
    """Run argv in cwd, sampling its process tree every 50 ms. Its output goes to `log`, its
    standard error too unless `stderr_log` is given."""
    peak_rss = peak_pss = peak_procs = samples = 0
    cpu_before = time.process_time()
    busy_before = machine_busy_s()
    with log.open("wb") as output, (stderr_log or Path(os.devnull)).open("wb") as errors:
        start = time.monotonic()
        stderr = errors if stderr_log else subprocess.STDOUT
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=output, stderr=stderr)
        sampler = TreeSampler(process.pid)
        while True:
            # PSS (smaps_rollup walks page tables) costs far more than RSS: not every sample.
            rss, pss, procs = sampler.sample(pss=samples % PSS_EVERY == 0)
            samples += 1
            peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
            peak_procs = max(peak_procs, procs)
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(max(0.0, start + samples * SAMPLE_INTERVAL - time.monotonic()))
        wall = time.monotonic() - start
    busy = machine_busy_s() - busy_before
    process.returncode = os.waitstatus_to_exitcode(status)
    return Measurement(
        argv=argv,
        returncode=process.returncode,
        wall_s=round(wall, 3),
        peak_mib=round(max(peak_rss / MIB, usage.ru_maxrss / 1024), 1),
        peak_rss_mib=round(peak_rss / MIB, 1),
        peak_pss_mib=round(peak_pss / MIB, 1),
        peak_processes=peak_procs,
        max_single_rss_mib=round(usage.ru_maxrss / 1024, 1),
        cpu_s=round(usage.ru_utime + usage.ru_stime, 2),
        machine_cpu_s=round(busy, 2),
        cpu_by_kind=sampler.cpu_by_kind(),
        samples=samples,
        sampler_cpu_s=round(time.process_time() - cpu_before, 3),
        log=str(log),
    )


@dataclass
class Usage:
    """What the trees of running processes took between a Watch's start and stop."""

    wall_s: float
    cpu_s: float  # CPU time (user + system) of the trees in that time, tree_ticks' growth
    peak_mib: float  # peak of the sampled summed RSS of the trees
    peak_pss_mib: float  # peak of the summed PSS (shared pages counted once), every 0.5 s
    peak_processes: int
    machine_cpu_s: float  # busy CPU time of the whole machine in that time
    cpu_by_kind: dict[str, float]  # sampled CPU seconds per kind of process, whole lifetimes


class Watch:
    """Samples the process trees of `pids` (already running: rq workers, a capture) every 50 ms
    in a thread, from `start()` until `stop()`, which gives their Usage. Also a context
    manager: `with Watch([pid]) as watch: ...`, then `watch.usage`."""

    def __init__(self, pids: list[int]):
        self.sampler = TreeSampler(*pids)
        self.usage: Usage | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._peaks = [0, 0, 0]  # rss, pss, processes

    def start(self) -> Watch:
        self.sampler.sample(pss=False)
        self._ticks = self.sampler.tree_ticks
        self._busy = machine_busy_s()
        self._started = time.monotonic()
        self._thread.start()
        return self

    def _run(self) -> None:
        samples = 0
        while not self._stop.is_set():
            sampled = self.sampler.sample(pss=samples % PSS_EVERY == 0)
            self._peaks = [max(a, b) for a, b in zip(self._peaks, sampled, strict=True)]
            samples += 1
            self._stop.wait(SAMPLE_INTERVAL)

    def stop(self) -> Usage:
        self._stop.set()
        self._thread.join()
        wall = time.monotonic() - self._started
        self.sampler.sample(pss=False)
        rss, pss, processes = self._peaks
        self.usage = Usage(
            wall_s=round(wall, 3),
            cpu_s=round((self.sampler.tree_ticks - self._ticks) / HZ, 2),
            peak_mib=round(rss / MIB, 1),
            peak_pss_mib=round(pss / MIB, 1),
            peak_processes=processes,
            machine_cpu_s=round(machine_busy_s() - self._busy, 2),
            cpu_by_kind=self.sampler.cpu_by_kind(),
        )
        return self.usage

    def __enter__(self) -> Watch:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
