"""The API of resource usage (portal/usage.py reads it from Prometheus): a lab's nodes now and
over the last minutes (whoever may see the lab; 404 for others), and the hypervisors over
hours (admins). When Prometheus does not answer: 503 with a message that says so.
"""

from __future__ import annotations

from apiflask import APIBlueprint, Schema
from apiflask.fields import Float, Integer, List, Nested, Raw, String
from apiflask.validators import Range

from portal import usage
from portal.access import lab_or_404
from portal.auth import current_user, login_required
from store.models import Role

bp = APIBlueprint("usage", __name__, url_prefix="/api")

SERIES = {"description": "[time (UTC ISO 8601), value] pairs, oldest first"}


class LabUsageQuery(Schema):
    minutes = Integer(load_default=usage.LAB_MINUTES, validate=Range(min=1, max=24 * 60))


class NodeUsageOut(Schema):
    node = String()
    kind = String()
    cpu_cores = Float(
        allow_none=True, metadata={"description": "CPU time per second (1.0: one core busy)"}
    )
    memory_bytes = Float(allow_none=True)
    cpu_series = List(List(Raw()), metadata=SERIES)
    memory_series = List(List(Raw()), metadata=SERIES)


class LabUsageOut(Schema):
    lab_id = Integer()
    minutes = Integer()
    nodes = List(Nested(NodeUsageOut))


class HypervisorUsageQuery(Schema):
    hours = Float(load_default=6, validate=Range(min=0.1, max=usage.MAX_HOURS))


class HypervisorUsageOut(Schema):
    hypervisor = String()
    memory_total_bytes = Float(allow_none=True)
    cpu = List(List(Raw()), metadata={**SERIES, "unit": "fraction of all CPUs busy"})
    memory = List(List(Raw()), metadata={**SERIES, "unit": "bytes used"})
    disk = List(List(Raw()), metadata={**SERIES, "unit": "fraction of / used"})


class HypervisorsUsageOut(Schema):
    hours = Float()
    hypervisors = List(Nested(HypervisorUsageOut))


def series_out(points) -> list[list]:
    return [[t.isoformat(), v] for t, v in points]


@bp.get("/labs/<int:lab_id>/usage")
@login_required()
@bp.input(LabUsageQuery, location="query", arg_name="query")
@bp.output(LabUsageOut)
@bp.doc(summary="CPU and memory of a lab's nodes now and over the last minutes", responses=[503])
def lab_usage(lab_id: int, query):
    lab = lab_or_404(current_user(), lab_id)
    nodes = usage.lab_usage(lab, query["minutes"])
    return {
        "lab_id": lab.id,
        "minutes": query["minutes"],
        "nodes": [
            {
                "node": n.node,
                "kind": n.kind,
                "cpu_cores": n.cpu_cores,
                "memory_bytes": n.memory_bytes,
                "cpu_series": series_out(n.cpu_series),
                "memory_series": series_out(n.memory_series),
            }
            for n in nodes
        ],
    }


@bp.get("/hypervisors/usage")
@login_required(Role.ADMIN)
@bp.input(HypervisorUsageQuery, location="query", arg_name="query")
@bp.output(HypervisorsUsageOut)
@bp.doc(summary="CPU, memory and disk of every hypervisor over time (admins)", responses=[503])
def hypervisors_usage(query):
    found = usage.hypervisor_usage(query["hours"])
    return {
        "hours": query["hours"],
        "hypervisors": [
            {
                "hypervisor": h.hypervisor,
                "memory_total_bytes": h.memory_total_bytes,
                **{name: series_out(h.series.get(name, [])) for name in usage.HYPERVISOR_QUERIES},
            }
            for h in found
        ],
    }
