"""Tags and management subnets of labs: allocated and recorded, so no two labs share one.

Every lab of a controller holds a tag (6 hex digits in the names of its bridge, management
port and hypervisor-side interfaces) and a management subnet that no other lab of the
controller holds. A lab prefers the tag and the default /24 its name hashes to, so its names
stay the same from one deploy to the next; when another lab holds them it gets the next free
ones. A subnet given by the topology is recorded too, and refused when it overlaps the
subnet of another lab.

`choose` is the one place that picks, over the allocations held; they are held in one of two
stores. The labs of the portal and the job CLI hold theirs in PostgreSQL (store.allocations:
taken when the lab is recorded, handed to the job's run as LTB_ALLOCATION, so workers on any
host share them); the labs of operators' ansible-playbook runs by hand hold theirs in the
registry file below.

The registry is one JSON file on the controller, `<state dir>/allocations.json`:

    {"labs": {"<lab>": {"tag": "3fa0c1", "mgmt_subnet": "172.21.4.0/24", "given": false}}}

Every read-modify-write holds an exclusive flock on `<state dir>/allocations.lock` and
replaces the file atomically, so deploys started at the same moment (separate
ansible-playbook processes) get different allocations. The inventory plugin allocates when
it reads a topology (deploy, and any other run; not when a job gives LTB_ALLOCATION), and
remove releases the allocation after the lab is gone from its hypervisor.

The hypervisor keeps the allocation a lab was deployed with beside its kept topology
(`<state dir>/labs/<lab>/allocation.json`, see ltb.deployed), and checks there that the
subnet is not in use by anything else (the module ltb_lab_allocation, with
plugins/module_utils/ltb_routes.py).
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from ltb.model import (
    MGMT_POOL,
    MGMT_SLOT_PREFIX,
    MGMT_SLOTS,
    TAG_DIGITS,
    TAG_SPACE,
    Allocation,
    Lab,
    lab_tag,
    mgmt_slot_subnet,
    preferred_mgmt_slot,
    tag_text,
)

REGISTRY_FILE = "allocations.json"
LOCK_FILE = "allocations.lock"
# Beside the kept topology on the hypervisor (ltb.deployed).
DEPLOYED_FILE = "allocation.json"
TAG = re.compile(f"[0-9a-f]{{{TAG_DIGITS}}}")


class AllocationError(ValueError):
    """A lab cannot have the tag or subnet it needs; the message names what holds it."""


@dataclass(frozen=True)
class Held:
    """One lab's entry of the registry; `given`: the subnet is the topology's own."""

    tag: str
    mgmt_subnet: IPv4Network
    given: bool = False

    @property
    def allocation(self) -> Allocation:
        return Allocation(self.tag, self.mgmt_subnet)


# Choosing -------------------------------------------------------------------------------------


def choose(
    lab: str,
    given: IPv4Network | None,
    own_networks: Iterable[IPv4Network],
    others: dict[str, Held],
    current: Held | None = None,
    describe: Callable[[str], str] = lambda other: f"lab {other!r}",
) -> Held:
    """The allocation of `lab`, apart from every lab in `others`.

    `given` is the topology's own management subnet (None: a default one); `own_networks`
    are the lab's link subnets, which a default subnet must not overlap; `current` is what
    the lab holds now (kept while it is still free, so a lab deployed again is unchanged);
    `describe` names another lab in errors (the portal says "another lab" for labs the
    caller may not see)."""
    tags = {held.tag for held in others.values()}
    tag = _free_tag(lab, tags) if current is None or current.tag in tags else current.tag

    if given is not None:
        for other, held in sorted(others.items()):
            if held.mgmt_subnet.overlaps(given):
                raise AllocationError(
                    f"management subnet {given} overlaps {held.mgmt_subnet}, the management "
                    f"subnet of {describe(other)}: set another mgmt.ipv4_subnet"
                )
        return Held(tag, given, given=True)

    taken = _slots_of(held.mgmt_subnet for held in others.values())
    avoid = taken | _slots_of(own_networks)
    if current is not None and not current.given:
        slot = _slot_of(current.mgmt_subnet)
        if slot is not None and slot not in avoid:
            return Held(tag, current.mgmt_subnet)
    preferred = preferred_mgmt_slot(lab)
    for step in range(MGMT_SLOTS):
        slot = (preferred + step) % MGMT_SLOTS
        if slot not in avoid:
            return Held(tag, mgmt_slot_subnet(slot))
    raise AllocationError(
        f"no default management subnet is free for lab {lab!r}: the {MGMT_SLOTS} /"
        f"{MGMT_SLOT_PREFIX} subnets of {MGMT_POOL} are held by {len(others)} other labs"
        + (" or overlap the lab's own subnets" if len(taken) < MGMT_SLOTS else "")
        + ": set mgmt.ipv4_subnet in the topology, or remove labs"
    )


def _free_tag(lab: str, taken: set[str]) -> str:
    start = int(lab_tag(lab), 16)
    for step in range(TAG_SPACE):
        tag = tag_text(start + step)
        if tag not in taken:
            return tag
    raise AllocationError(f"no tag is free for lab {lab!r}")  # 16.7 million labs


def _slot_of(subnet: IPv4Network) -> int | None:
    """The slot of a default subnet of the pool, None for any other subnet."""
    if subnet.prefixlen != MGMT_SLOT_PREFIX or not subnet.subnet_of(MGMT_POOL):
        return None
    return (int(subnet.network_address) - int(MGMT_POOL.network_address)) >> (32 - MGMT_SLOT_PREFIX)


def _slots_of(networks: Iterable[IPv4Network]) -> set[int]:
    """Slots of the pool that the networks overlap."""
    slots: set[int] = set()
    for network in networks:
        slots.update(_slots_of_network(network))
    return slots


@functools.lru_cache(maxsize=4096)  # the registry's subnets, over and over
def _slots_of_network(network: IPv4Network) -> range:
    base, shift = int(MGMT_POOL.network_address), 32 - MGMT_SLOT_PREFIX
    if network.version != 4 or not network.overlaps(MGMT_POOL):
        return range(0)
    first = max(int(network.network_address), base) - base
    last = min(int(network.broadcast_address), int(MGMT_POOL.broadcast_address)) - base
    return range(first >> shift, (last >> shift) + 1)


def own_networks(lab: Lab) -> list[IPv4Network]:
    """The IPv4 subnets of the lab's interfaces, which its management subnet must not overlap."""
    return [
        interface.ipv4.network
        for node in lab.nodes
        for interface in node.interfaces
        if interface.ipv4 is not None
    ]


# The registry ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Registry:
    """The allocations of a controller's labs, in `<state_dir>/allocations.json`."""

    state_dir: Path

    @property
    def path(self) -> Path:
        return Path(self.state_dir) / REGISTRY_FILE

    def allocate(
        self,
        lab: Lab,
        given: IPv4Network | None = None,
        deployed: Allocation | None = None,
        record: bool = True,
    ) -> Allocation:
        """The allocation of `lab` (the same as before if it holds one), recorded.
        `deployed`: the one the lab is deployed with here (ltb.deployed), taken again while
        free when the registry holds none for the lab (a lab of the portal, whose allocation
        the lab store holds, removed by hand from its kept topology). `record=False`: the
        allocation a run would record, the registry left as it is (a check-mode run).

        The signature of ltb.topology's `allocate`: `load_lab(path, registry.allocate)`."""
        with self._locked() as labs:
            recorded = labs.pop(lab.name, None)
            current = recorded
            if current is None and deployed is not None:
                current = Held(deployed.tag, deployed.mgmt_subnet)
            held = choose(lab.name, given, own_networks(lab), labs, current)
            if record:
                labs[lab.name] = held
            elif recorded is not None:
                labs[lab.name] = recorded
            return held.allocation

    def release(self, lab: str) -> bool:
        """Forget the lab's allocation (after the lab is gone); True if it held one."""
        with self._locked() as labs:
            return labs.pop(lab, None) is not None

    def held(self) -> dict[str, Held]:
        with self._locked() as labs:
            return dict(labs)

    @contextmanager
    def _locked(self) -> Iterator[dict[str, Held]]:
        """The registry's entries, read and written back under an exclusive lock."""
        directory = Path(self.state_dir)
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / LOCK_FILE, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            labs = self._read()
            before = dict(labs)
            yield labs
            if labs != before:
                self._write(labs)

    def _read(self) -> dict[str, Held]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        try:
            return {name: held_from_json(entry) for name, entry in json.loads(text)["labs"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            # Starting afresh would hand out subnets that running labs still use.
            raise AllocationError(
                f"the lab allocation registry {self.path} cannot be read ({error!r}): "
                "repair it (one entry per lab that exists) before deploying"
            ) from None

    def _write(self, labs: dict[str, Held]) -> None:
        # One lab a line, so people can read the file and diff it.
        text = json.dumps({"labs": {n: held_to_json(h) for n, h in sorted(labs.items())}})
        text = text.replace('}, "', '},\n "').replace('{"labs": {"', '{"labs": {\n "') + "\n"
        fd, temporary = tempfile.mkstemp(prefix=f".{REGISTRY_FILE}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(text)
                file.flush()
                os.fsync(file.fileno())
            os.chmod(temporary, 0o644)
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def release_from_file(lab: str, registry_file: Path, check_mode: bool = False) -> bool:
    """Forget `lab`'s allocation in the registry file a playbook names (the inventory's
    `ltb_lab_network.allocations`); in check mode, only say whether it holds one. The file must
    be a registry's, so a forged task argument cannot make it write any other file. The
    controller's action plugins (ltb_lab_remove, ltb_lab_allocation) release through this."""
    if registry_file.name != REGISTRY_FILE:
        raise ValueError(f"registry must be a file named {REGISTRY_FILE}, not {registry_file}")
    registry = Registry(registry_file.parent)
    return lab in registry.held() if check_mode else registry.release(lab)


def allocation_text(allocation: Allocation) -> str:
    """`<tag>/<subnet>`: how a job hands a lab's allocation to its playbook run
    (LTB_ALLOCATION, read by the inventory plugin)."""
    return f"{allocation.tag}/{allocation.mgmt_subnet}"


def parse_allocation_text(text: str) -> Allocation:
    """The allocation of `allocation_text`; ValueError naming what is wrong."""
    tag, _, subnet = text.partition("/")
    if not TAG.fullmatch(tag):
        raise ValueError(f"{text!r} is not <tag>/<subnet>: the tag is not {TAG_DIGITS} hex digits")
    try:
        network = IPv4Network(subnet)
    except ValueError as error:
        raise ValueError(f"{text!r} is not <tag>/<subnet>: {error}") from None
    return Allocation(tag, network)


def held_to_json(held: Held) -> dict[str, Any]:
    return {"tag": held.tag, "mgmt_subnet": _text(held.mgmt_subnet), "given": held.given}


def held_from_json(entry: dict[str, Any]) -> Held:
    tag = str(entry["tag"])
    if not TAG.fullmatch(tag):
        raise ValueError(f"tag {tag!r} is not {TAG_DIGITS} lower-case hex digits")
    return Held(tag, _network(str(entry["mgmt_subnet"])), bool(entry.get("given", False)))


# A registry of 1,000 labs is read and written at every allocation: parse and print each
# subnet once.
@functools.lru_cache(maxsize=4096)
def _network(text: str) -> IPv4Network:
    return IPv4Network(text)


@functools.lru_cache(maxsize=4096)
def _text(network: IPv4Network) -> str:
    return str(network)
