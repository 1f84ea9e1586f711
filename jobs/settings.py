"""Settings of the job layer, in one place: environment variables with defaults.

Read when asked (`load()`), so a worker, the scheduler and the tests each see the
environment they were started with.

    LTB_DATABASE_URL        PostgreSQL of the running-lab store (store.db)
    LTB_REDIS_URL           Redis that holds the queues            redis://127.0.0.1:6379/0
    LTB_QUEUE               name of the task queue                  ltb
    LTB_TASK_TIMEOUT        seconds a task may run before it is stopped          1800
    LTB_JOBS_DIR            where ansible-runner private data directories are made
    LTB_HYPERVISORS         inventory directory of the hypervisors  <repo>/inventory
    LTB_HYPERVISOR          hypervisor that runs new labs           localhost
    LTB_SCHEDULER_INTERVAL  seconds between the scheduler's looks at its queue   5
    LTB_SWEEP_INTERVAL      seconds between looks for jobs whose worker died     30
    LTB_KEEP_RUNS           1: keep private data directories after a run (debugging)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from store.db import database_url

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str
    queue: str
    task_timeout: int
    jobs_dir: Path
    hypervisors_inventory: Path
    hypervisor: str
    scheduler_interval: float
    sweep_interval: int
    keep_runs: bool

    @property
    def control_queue(self) -> str:
        """Queue of the short bookkeeping jobs (reservation start and end, sweeps); workers
        take them before lab tasks, so a reservation is not late behind a long deploy."""
        return f"{self.queue}-control"


def load() -> Settings:
    env = os.environ.get
    return Settings(
        database_url=database_url(),
        redis_url=env("LTB_REDIS_URL", "redis://127.0.0.1:6379/0"),
        queue=env("LTB_QUEUE", "ltb"),
        task_timeout=int(env("LTB_TASK_TIMEOUT", "1800")),
        jobs_dir=Path(env("LTB_JOBS_DIR", "/var/lib/ltb/jobs")),
        hypervisors_inventory=Path(env("LTB_HYPERVISORS", str(ROOT / "inventory"))),
        hypervisor=env("LTB_HYPERVISOR", "localhost"),
        scheduler_interval=float(env("LTB_SCHEDULER_INTERVAL", "5")),
        sweep_interval=int(env("LTB_SWEEP_INTERVAL", "30")),
        keep_runs=env("LTB_KEEP_RUNS", "0") == "1",
    )
