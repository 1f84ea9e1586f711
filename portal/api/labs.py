"""The API of labs (being built): for now, read-only JSON views of labs and their jobs."""

from __future__ import annotations

from apiflask import APIBlueprint
from flask import abort, jsonify
from sqlalchemy import select

from store.db import db
from store.labs import job_summary, lab_summary
from store.models import Job, Lab

bp = APIBlueprint("labs", __name__, url_prefix="/api")


@bp.get("/labs")
def list_labs():
    labs = db.session.scalars(select(Lab).order_by(Lab.name)).all()
    return jsonify([{"name": lab.name, "state": lab.state, "owner": lab.owner} for lab in labs])


@bp.get("/labs/<name>")
def show_lab(name: str):
    lab = db.session.scalars(select(Lab).where(Lab.name == name)).one_or_none()
    if lab is None:
        abort(404)
    return jsonify(lab_summary(lab) | {"jobs": [job_summary(job) for job in lab.jobs]})


@bp.get("/jobs/<job_id>")
def show_job(job_id: str):
    job = db.session.get(Job, job_id)
    if job is None:
        abort(404)
    return jsonify(job_summary(job))
