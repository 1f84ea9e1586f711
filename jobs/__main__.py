"""Command line of the job layer:

python -m jobs worker [--burst]         an rq worker of LTB's queues
python -m jobs scheduler                rq-scheduler, reconciled with PostgreSQL first
python -m jobs migrate                  create or migrate the database schema
python -m jobs submit TASK LAB [TOPOLOGY_FILE] [-p KEY=VALUE...] [--ignore-capacity]
    queue a lab task, e.g.
    submit deploy LAB LAB.lab.yml | submit mirror LAB -p endpoint=r1:eth1
    submit snapshot LAB -p name=S [-p action=delete] | submit restore LAB -p name=S
    (`python -m jobs submit --help` lists every task and its parameters)
python -m jobs cancel JOB_ID
python -m jobs reserve TOPOLOGY_FILE START END [--ignore-capacity]   (ISO 8601, with a zone)
    (a deploy that starts a lab, and a reservation, are placed on the hypervisors and refused
    when they fit nowhere, as in the portal; --ignore-capacity skips that check)
python -m jobs labs                     labs with their state and owner
python -m jobs jobs [--lab LAB] [--limit N]   recent jobs, newest first
python -m jobs follow JOB_ID            print the job's events as they come, until it ends
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import datetime
from pathlib import Path

from jobs.redact import redact_logs
from store.tasks import TASKS

IGNORE_CAPACITY_HELP = (
    "do not check the hypervisors' capacity and drain (as the portal does): a deploy goes to "
    "LTB_HYPERVISOR and its topology's pins, and so does a reservation's when it begins"
)


def tasks_help() -> str:
    """Every task and its parameters, from the registry."""
    lines = ["tasks and their parameters (-p NAME=VALUE):"]
    for task in TASKS.values():
        lines.append(f"  {task.name}: {task.summary}")
        for p in task.parameters:
            given = "required" if p.required else f"default {p.default!r}" if p.default else ""
            lines.append(f"    {p.name}  {p.rule_text}" + (f" ({given})" if given else ""))
    return "\n".join(lines)


def parse_params(pairs: list[str]) -> dict[str, str]:
    params = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"-p {pair!r}: give NAME=VALUE")
        params[name] = value
    return params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser("worker")
    worker.add_argument("--burst", action="store_true", help="stop when the queues are empty")
    commands.add_parser("scheduler")
    commands.add_parser("migrate")
    submit = commands.add_parser(
        "submit", epilog=tasks_help(), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    submit.add_argument("task", choices=list(TASKS))
    submit.add_argument("lab")
    submit.add_argument("topology", nargs="?", type=Path)
    submit.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE")
    submit.add_argument("--ignore-capacity", action="store_true", help=IGNORE_CAPACITY_HELP)
    cancel = commands.add_parser("cancel")
    cancel.add_argument("job_id")
    reserve = commands.add_parser("reserve")
    reserve.add_argument("topology", type=Path)
    reserve.add_argument("start", type=datetime.fromisoformat)
    reserve.add_argument("end", type=datetime.fromisoformat)
    reserve.add_argument("--ignore-capacity", action="store_true", help=IGNORE_CAPACITY_HELP)
    commands.add_parser("labs")
    jobs_parser = commands.add_parser("jobs")
    jobs_parser.add_argument("--lab", help="only the jobs of this lab")
    jobs_parser.add_argument("--limit", type=int, default=20)
    follow = commands.add_parser("follow")
    follow.add_argument("job_id")
    args = parser.parse_args(argv)
    if args.command in ("labs", "jobs", "follow"):
        from jobs.operator import follow_job, list_jobs, list_labs

        if args.command == "labs":
            return list_labs()
        if args.command == "jobs":
            return list_jobs(args.lab, args.limit)
        return follow_job(args.job_id)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    redact_logs()  # before a worker or the scheduler logs an error text or a traceback

    if args.command == "worker":
        from jobs.worker import main as run_worker

        run_worker(burst=args.burst)
    elif args.command == "scheduler":
        from jobs.scheduler import main as run_scheduler

        run_scheduler()
    elif args.command == "migrate":
        from store.db import upgrade_database

        upgrade_database()
    elif args.command == "submit":
        from jobs.operator import CapacityRefused, submit_placed
        from store.labs import LabError

        try:
            params = parse_params(args.param)
        except ValueError as error:
            submit.error(str(error))
        topology = args.topology.read_text() if args.topology else None
        try:
            print(submit_placed(args.lab, args.task, topology, params, args.ignore_capacity))
        except (LabError, CapacityRefused) as error:
            print(f"python -m jobs submit: {error}", file=sys.stderr)
            return 2
    elif args.command == "cancel":
        from jobs.queue import cancel as cancel_job

        print(cancel_job(args.job_id))
    elif args.command == "reserve":
        from jobs.operator import CapacityRefused, reserve_placed
        from jobs.reservations import ReservationError

        try:
            topology = args.topology.read_text()
            print(reserve_placed(topology, args.start, args.end, args.ignore_capacity))
        except (ReservationError, CapacityRefused) as error:
            print(f"python -m jobs reserve: {error}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
