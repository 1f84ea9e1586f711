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
"""

import os
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
