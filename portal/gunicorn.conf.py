"""gunicorn's settings for the portal (`gunicorn -c portal/gunicorn.conf.py 'portal:create_app()'`).

    LTB_PORTAL_BIND      address and port                    127.0.0.1:8080
    LTB_PORTAL_WORKERS   worker processes                    2
    LTB_PORTAL_THREADS   threads of each worker for requests 4
    LTB_TERMINALS_PER_WORKER  web terminals a worker serves  16

A web terminal (portal/terminal.py) holds a thread for its life, so each worker gets
LTB_TERMINALS_PER_WORKER threads more than LTB_PORTAL_THREADS and refuses terminals past that
number: open terminals never take the threads that serve pages and the API.

/metrics adds up the workers' request metrics through PROMETHEUS_MULTIPROC_DIR: the master
empties it when it starts (old workers' counts are not this run's) and marks a worker's files
dead when it exits.

Each worker, once it has loaded the app, freezes what the app made (gc.freeze: the ~150,000
objects of modules, schemas and mappers are never scanned by the collector again) and
collects its youngest generation every GC_GEN0_THRESHOLD allocations rather than 700. Measured
in-process over 3,000 polled lab answers (bench/README.md): full collections of the unfrozen
app held the GIL, and so every thread of the worker, 120 ms each; frozen, no pause is over
9 ms and the collector's CPU is a quarter. A thread that waited (for PostgreSQL, a client)
gets the GIL back within SWITCH_INTERVAL_S of asking for it rather than 5 ms: in three
side-by-side comparisons of bench/portal.py (bench/README.md) the polled answers' p50 and
p99 were lower each time, for the same CPU per request.
"""

import gc
import os
import sys
from pathlib import Path

bind = os.environ.get("LTB_PORTAL_BIND", "127.0.0.1:8080")
workers = int(os.environ.get("LTB_PORTAL_WORKERS", "2"))
threads = int(os.environ.get("LTB_PORTAL_THREADS", "4")) + int(
    os.environ.get("LTB_TERMINALS_PER_WORKER", "16")
)
worker_class = "gthread"
timeout = 60
graceful_timeout = 20
accesslog = "-"
# No query strings in the log: they may hold what users typed.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms'


GC_GEN0_THRESHOLD = 5000
# A request thread back from PostgreSQL waits for the GIL until the thread holding it lets go:
# Python makes it do so after this long (5 ms by default), on each of a request's round trips.
SWITCH_INTERVAL_S = 0.001


def post_worker_init(worker):
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])


def on_starting(server):
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        for old in path.glob("*.db"):
            old.unlink()


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
