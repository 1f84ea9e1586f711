"""`/metrics` for Prometheus: the portal's requests, and the store's jobs and labs.

Requests are counted in this process (by route, method and status) with their durations.
Jobs by task and status, the durations of ended jobs (count and sum per task) and labs by
state are read from the store at scrape time, so every worker answers the same.

Under gunicorn each worker is a process: with PROMETHEUS_MULTIPROC_DIR set (the service sets
it and empties it before the start; portal/gunicorn.conf.py marks a dead worker's files), the
request metrics of all workers are added up at each scrape.
"""

from __future__ import annotations

import os
import time

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, SummaryMetricFamily
from sqlalchemy import func, select

from store.db import db
from store.models import Job, Lab

REQUESTS = Counter(
    "ltb_portal_requests_total",
    "Requests answered by the portal",
    ["endpoint", "method", "status"],
)
DURATION = Histogram(
    "ltb_portal_request_duration_seconds",
    "Time to answer a request",
    ["endpoint", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class StoreCollector:
    """Jobs and labs as the store holds them when Prometheus asks."""

    def collect(self):
        jobs = GaugeMetricFamily("ltb_jobs", "Jobs in the store", labels=["task", "status"])
        for task, status, count in db.session.execute(
            select(Job.task, Job.status, func.count()).group_by(Job.task, Job.status)
        ):
            jobs.add_metric([task, status], count)
        yield jobs

        seconds = func.extract("epoch", Job.ended_at - Job.started_at)
        ended = db.session.execute(
            select(Job.task, func.count(), func.coalesce(func.sum(seconds), 0))
            .where(Job.started_at.is_not(None), Job.ended_at.is_not(None))
            .group_by(Job.task)
        ).all()
        durations = SummaryMetricFamily(
            "ltb_job_duration_seconds", "Run time of ended jobs", labels=["task"]
        )
        for task, number, summed in ended:
            durations.add_metric([task], count_value=number, sum_value=float(summed))
        yield durations

        labs = GaugeMetricFamily("ltb_labs", "Labs in the store", labels=["state"])
        for state, number in db.session.execute(
            select(Lab.state, func.count()).group_by(Lab.state)
        ):
            labs.add_metric([state], number)
        yield labs


def _endpoint() -> str:
    # The route's pattern, not the path: /api/labs/<int:lab_id>, never one series per id.
    return request.url_rule.rule if request.url_rule is not None else "unmatched"


def init_metrics(app: Flask) -> None:
    @app.before_request
    def start_timer() -> None:
        g.request_started = time.perf_counter()

    @app.after_request
    def count_request(response: Response) -> Response:
        endpoint = _endpoint()
        REQUESTS.labels(endpoint, request.method, str(response.status_code)).inc()
        started = g.get("request_started")
        if started is not None:
            DURATION.labels(endpoint, request.method).observe(time.perf_counter() - started)
        return response

    @app.get("/metrics")
    @app.doc(hide=True)
    def metrics() -> Response:
        registry = CollectorRegistry()
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            multiprocess.MultiProcessCollector(registry)
        else:
            registry.register(REQUESTS)
            registry.register(DURATION)
        registry.register(StoreCollector())
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
