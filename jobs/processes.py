"""Every process of a lab task in a cgroup of its own, so that all of them end with the task.

ansible-playbook runs in a session of its own (ansible-runner starts it on a pty), so a
signal to the rq work horse or its process group does not reach it: killed by rq's timeout,
the OOM killer, SIGKILL or a cold shutdown, the work horse would leave the playbook running,
and the lab's advisory lock, released with the horse's connection, would let the next task
of the lab run beside it. So the work horse, once it holds the lab's lock, moves itself into

    <cgroup2>/ltb/lab-<lab name>/job-<job id>.<pid>.<start time of pid>

before it starts the playbook. Everything the playbook starts is born in that group and
cannot leave it, and `cgroup.kill` ends all of it at once. The group's name says which job
and which work horse own it, so whether that horse still lives is known without the
database (which may be what failed). A group is killed when its task ends (by the horse
itself), when its horse dies (the worker, jobs.worker), when the sweep fails its job
(jobs.health), and when the next task of the lab finds it left over (`claim_lab`).
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

# The usual place of a pure cgroup v2 host, preferred when several cgroup2 mounts exist.
UNIFIED = Path("/sys/fs/cgroup")
LTB_GROUP = "ltb"
# How long a killed group may take to empty (processes in uninterruptible sleep).
KILL_TIMEOUT = 15.0


class CgroupError(RuntimeError):
    pass


class LabProcessesRunning(CgroupError):
    """A process of an earlier task of the lab runs, and so does the work horse that owns it."""

    def __init__(self, job_id: str, pids: list[int]) -> None:
        super().__init__(
            f"processes {', '.join(map(str, pids[:10]))} of job {job_id} of this lab still run"
        )
        self.job_id = job_id


@cache
def cgroup2_root() -> Path:
    """Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or e.g. /sys/fs/cgroup/unified
    on a hybrid host)."""
    mounts = []
    with open("/proc/mounts") as lines:
        for line in lines:
            fields = line.split()
            if len(fields) > 2 and fields[2] == "cgroup2":
                mounts.append(Path(fields[1]))
    if not mounts:
        raise CgroupError(
            "no cgroup v2 file system is mounted (none in /proc/mounts); lab tasks need one "
            "to end every process of a task with it: mount it, e.g. "
            "`mount -t cgroup2 none /sys/fs/cgroup/unified`"
        )
    return UNIFIED if UNIFIED in mounts else mounts[0]


def process_start_time(pid: int) -> str | None:
    """Start time of a process (clock ticks since boot), to tell it from a later one that
    reuses its pid; None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    # A zombie (state Z) has ended; its parent just has not collected it.
    return None if fields[0] in ("Z", "X") else fields[19]


def lab_group(lab: str) -> Path:
    # By name, as everything of a lab on a hypervisor is (its id is only the store's).
    return cgroup2_root() / LTB_GROUP / f"lab-{lab}"


def job_group_name(job_id: str, pid: int, started: str) -> str:
    return f"job-{job_id}.{pid}.{started}"


def members(group: Path) -> list[int]:
    """Pids of the processes in the group (none if it does not exist)."""
    try:
        return [int(pid) for pid in (group / "cgroup.procs").read_text().split()]
    except FileNotFoundError:
        return []


def owner_alive(group: Path) -> bool:
    """Whether the work horse named in the group's name still runs."""
    _, pid, started = group.name.rsplit(".", 2)
    return pid.isdigit() and process_start_time(int(pid)) == started


def kill(group: Path, timeout: float = KILL_TIMEOUT) -> None:
    """Kill every process in the group, wait until it is empty and delete it."""
    if not group.is_dir():
        return
    if members(group):
        (group / "cgroup.kill").write_text("1")
    deadline = time.monotonic() + timeout
    while "populated 1" in (group / "cgroup.events").read_text():
        if time.monotonic() > deadline:
            raise CgroupError(f"processes {members(group)} of {group} did not end when killed")
        time.sleep(0.05)
    with contextlib.suppress(FileNotFoundError):
        group.rmdir()
    with contextlib.suppress(OSError):  # the lab's group, unless another task has one there
        group.parent.rmdir()


def kill_job(job_id: str) -> list[Path]:
    """Kill the group of job `job_id` on this host, whichever lab it is of; return the groups
    killed."""
    try:
        groups = list((cgroup2_root() / LTB_GROUP).glob(f"lab-*/job-{job_id}.*"))
    except CgroupError:
        return []
    for group in groups:
        kill(group)
    return groups


def claim_lab(lab: str) -> None:
    """Make sure no process of an earlier task of the lab runs, before a task of it starts:
    groups whose work horse is gone are killed; raise LabProcessesRunning if one's lives.
    Called while holding the lab's advisory lock (which a database restart may have taken
    from a work horse that still runs: then this refuses)."""
    for group in sorted(lab_group(lab).glob("job-*")):
        if owner_alive(group) and members(group):
            raise LabProcessesRunning(group.name.split(".")[0].removeprefix("job-"), members(group))
        kill(group)


@dataclass(frozen=True)
class JobCgroup:
    path: Path  # the job's group
    home: Path  # the group the work horse came from


def own_group() -> Path:
    lines = Path("/proc/self/cgroup").read_text().splitlines()
    path = next(line for line in lines if line.startswith("0::")).removeprefix("0::")
    return cgroup2_root() / path.strip("/")


def enter(lab: str, job_id: str) -> JobCgroup:
    """Move this process into a new group of the job; what it starts from now on is there."""
    pid = os.getpid()
    started = process_start_time(pid)
    if started is None:  # pragma: no cover - this process runs
        raise CgroupError(f"no start time of process {pid}")
    home = own_group()
    group = lab_group(lab) / job_group_name(job_id, pid, started)
    group.mkdir(parents=True, exist_ok=True)
    (group / "cgroup.procs").write_text(str(pid))
    return JobCgroup(group, home)


def leave(cgroup: JobCgroup) -> None:
    """Move this process back to the group it came from, then kill what is left in the job's
    group (processes the task started and did not wait for, e.g. SSH control masters)."""
    (cgroup.home / "cgroup.procs").write_text(str(os.getpid()))
    kill(cgroup.path)
