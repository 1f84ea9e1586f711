"""The labs' allocations in PostgreSQL: the tag and management subnet of each lab of the store.

ltb.allocation chooses (its pure `choose`); this is its store for the portal and the jobs,
beside the registry file that operators' ansible-playbook runs by hand use. A lab takes its
allocation when it is recorded (store.labs.request_task), or at its next task if it holds
none; it holds it until a job leaves it removed (store.labs.finish_job). The job hands it to
its playbook run (LTB_ALLOCATION, read by the inventory plugin), so workers on any host use
the same one and no run touches a registry file.

Choosing reads every held allocation and writes the lab's under a transaction-level
advisory lock: two labs recorded at once, by workers or portals on any host, never choose
alike. The table's constraints (a tag held once, subnets that never overlap) are the
backstop. The labs the registry file of this host holds (deployed by hand here) are avoided
too, so a single-host install keeps both kinds of lab apart; the hypervisor still refuses a
subnet in use there (ltb_lab_allocation).
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Network

from sqlalchemy import String, cast, func, select
from sqlalchemy.orm import Session

from ltb import model
from ltb.allocation import (
    AllocationError,
    Held,
    Registry,
    choose,
    held_from_json,
    own_networks,
)
from ltb.deployed import DEFAULT_STATE_DIR
from ltb.topology import parse_lab
from store.models import Lab

# First key of the advisory lock that serialises choosing (jobs.tasks has 0x17B, ...).
ALLOCATION_LOCK_SPACE = 0x17E


class LabAllocationError(ValueError):
    """The lab cannot have the tag or subnet it needs; says what to change."""


def held(lab: Lab) -> Held | None:
    """What the lab holds now, None if nothing."""
    if lab.tag is None or lab.mgmt_subnet is None:
        return None
    return Held(lab.tag, IPv4Network(str(lab.mgmt_subnet)), lab.mgmt_subnet_given)


def parse_topology(topology: str, source: str) -> tuple[model.Lab, IPv4Network | None]:
    """The lab of a topology text (validated, its preferred names) and the management subnet
    the topology gives (None: a default one). Raises ltb.topology.TopologyError."""
    given: list[IPv4Network | None] = []

    def note(lab: model.Lab, subnet: IPv4Network | None) -> model.Allocation:
        given.append(subnet)
        return model.Allocation(lab.tag, lab.mgmt_subnet)

    lab = parse_lab(topology, source, note)
    return lab, given[0]


def allocate(
    session: Session,
    lab: Lab,
    lab_model: model.Lab,
    given: IPv4Network | None,
    may_see: Callable[[Lab], bool] | None = None,
) -> model.Allocation:
    """Give the lab (its row, of `lab_model`) its allocation, in the caller's transaction:
    the one it holds while that is still its own to keep, else the one its name prefers, else
    the next free one. `may_see(holder)`: whether an error may name the lab that holds a
    given subnet (else it says "another lab"); None: it may."""
    session.execute(select(func.pg_advisory_xact_lock(ALLOCATION_LOCK_SPACE, 0)))
    # As text, parsed by the registry's cached parser: psycopg's own parse of 1,000 cidr
    # values was a third of the time of a request.
    rows = session.execute(
        select(Lab.name, Lab.tag, cast(Lab.mgmt_subnet, String), Lab.mgmt_subnet_given).where(
            Lab.tag.is_not(None), Lab.id != lab.id
        )
    ).all()
    others = {
        name: held_from_json({"tag": tag, "mgmt_subnet": subnet, "given": given})
        for name, tag, subnet, given in rows
    }
    by_hand = _held_by_hand(session, lab.name)
    in_file = by_hand.pop(lab.name, None)
    current = held(lab) or in_file
    for name, entry in by_hand.items():
        others.setdefault(f"{name} (deployed by hand)", entry)

    def describe(other: str) -> str:
        if may_see is None or other.endswith("(deployed by hand)"):
            return f"lab {other!r}"
        holder = session.scalars(select(Lab).where(Lab.name == other)).one_or_none()
        return f"lab {other!r}" if holder is not None and may_see(holder) else "another lab"

    try:
        chosen = choose(lab.name, given, own_networks(lab_model), others, current, describe)
    except AllocationError as error:
        raise LabAllocationError(f"lab {lab.name!r}: {error}") from None
    lab.tag, lab.mgmt_subnet, lab.mgmt_subnet_given = (
        chosen.tag,
        str(chosen.mgmt_subnet),
        chosen.given,
    )
    session.flush()
    return chosen.allocation


def ensure(session: Session, lab: Lab) -> model.Allocation:
    """The lab's allocation, taken now from its recorded topology if it holds none (a lab
    recorded before allocations were kept here, or released since)."""
    current = held(lab)
    if current is not None:
        return current.allocation
    lab_model, given = parse_topology(lab.topology, f"lab {lab.name}")
    return allocate(session, lab, lab_model, given)


def release(lab: Lab) -> None:
    """The lab holds nothing now (it is removed): another lab may take its tag and subnet."""
    lab.tag, lab.mgmt_subnet, lab.mgmt_subnet_given = None, None, False


def _held_by_hand(session: Session, name: str) -> dict[str, Held]:
    """What this host's registry file holds for labs that are not in the store, and for the
    lab `name` (which it held before the store kept allocations)."""
    registry = Registry(DEFAULT_STATE_DIR)
    if not registry.path.exists():
        return {}
    try:
        entries = registry.held()
    except (AllocationError, OSError):
        return {}  # the hypervisor still refuses a subnet in use there
    stored = set(session.scalars(select(Lab.name).where(Lab.name.in_(list(entries)))))
    return {n: h for n, h in entries.items() if n == name or n not in stored}
