# LTB module_utils: a restore in place, the whole of a lab's part on this hypervisor in one
# module run (ltb_snapshot action=restore). Standard library only.
#
# A lab that runs from the topology a snapshot was taken of keeps its network (bridge, tunnel,
# management port, config drives and VM directories): only its nodes are replaced, each by
# what the snapshot saved, as a bare restore does it:
#   1. the plan is checked (what action=plan checks: every image, disk and memory file there)
#      and the topology the controller was given must be the snapshot's (its SHA-256);
#   2. two chains at the same time, each removing its nodes (remove's sweeps, ltb_lab_absent)
#      before it makes them again under the same names: the containers, each from its
#      committed image with its ports and addresses (ltb_containers, the code
#      ltb_lab_containers runs at deploy; no startup files, the image has them as they were);
#      and the VMs (ltb_snapshot_resume: disk copied back, domain defined, memory resumed or
#      disk booted, SSH);
#   3. the lab's ports wired in their VLANs (ltb_links), the containers awaited until ready;
#   4. the runtime state replayed (routes set by hand; nothing in VMs that resumed).
# A lab that does not run from the snapshot's topology (or a VM that cannot be restored here)
# is not touched: the result says so, and restore.yml removes and deploys it whole.
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils import ltb_snapshot as snapshots
from ansible.module_utils import ltb_snapshot_resume as resume
from ansible.module_utils.ltb_containers import Lab, NodeError, normalise_nodes
from ansible.module_utils.ltb_docker import Docker, DockerError
from ansible.module_utils.ltb_lab_absent import RemoveError, containers_absent, domains_absent
from ansible.module_utils.ltb_links import wire
from ansible.module_utils.ltb_ovs import OvsError
from ansible.module_utils.ltb_veth import VethError


class Request:
    """What the controller gives a restore in place of lab `lab` from snapshot `name`.

    `nodes`: the lab's nodes here, each its `ltb_node.snapshot`; `containers`: its container
    nodes here, each its `ltb_node` (what ltb_lab_containers takes), with `container_params`
    (ltb_lab_containers' capabilities, sysctls, default_image, ready_timeout, hypervisor);
    `bridge`/`ports`: the lab's network; `node_prefix`: its domains' name prefix;
    `topology_sha256`: of the topology file given to the controller (`topology_file`)."""

    def __init__(
        self,
        lab,
        name,
        *,
        nodes,
        containers,
        container_params,
        bridge,
        ports,
        node_prefix,
        topology_sha256,
        topology_file="the topology given",
        timeout=300,
    ):
        self.lab, self.name, self.nodes = lab, name, nodes
        self.containers = containers
        self.container_params = container_params
        self.bridge, self.ports = bridge, ports
        self.node_prefix = node_prefix
        self.topology_sha256 = topology_sha256
        self.topology_file = topology_file
        self.timeout = timeout


def restore(request, where, check_mode=False):
    """Restore the lab in place when it runs from the snapshot's topology. Returns a dict:
    `plan` (restore_plan's), `in_place` (False: nothing done, `why`), and when restored (or, in
    check mode, what would be) `actions` (lines), `vms` (per VM: state, why, seconds), `routes`
    (replayed per node), `warnings`, `seconds` (per step)."""
    lab, name = request.lab, request.name
    plan = snapshots.restore_plan(lab, name, where, check_mode=check_mode)
    if request.topology_sha256 != plan["topology_sha256"]:
        raise snapshots.SnapshotError(
            f"lab {lab} was snapshotted as {name!r} from another topology than "
            f"{request.topology_file}: restore with -i {plan['topology']}"
        )
    if plan["running_sha256"] != plan["topology_sha256"]:
        why = "not running" if plan["running_sha256"] is None else "runs from another topology"
        return {"plan": plan, "in_place": False, "why": f"lab {lab} {why}"}
    vms, why_not = resume.restorable(lab, name, request.nodes, where)
    if why_not:
        return {"plan": plan, "in_place": False, "why": "; ".join(why_not)}
    resume.check_restorable(lab, name, vms, where, request.node_prefix)
    containers = normalise_nodes(request.containers)
    images = _container_images(lab, name, plan, containers)
    params = dict(request.container_params, lab=lab, images=images, copy_files=False)
    params.setdefault("authorized_keys", [])
    params.setdefault("parallel", 8)
    docker = Docker()
    nodes = Lab(params, docker, check_mode)
    nodes.images(containers)  # every committed image is there (the plan checked it by name)
    if check_mode:
        return _would(request, where, plan, vms, containers, images, docker)

    seconds = {}
    step = time.monotonic()
    # Two chains at the same time, each removing its nodes before it makes them again (same
    # names): the containers (several at a time), and the VMs (several at a time).
    with ThreadPoolExecutor(max_workers=2) as pool:
        container_chain = pool.submit(_containers_again, request, nodes, docker, containers)
        vm_chain = pool.submit(_vms_again, request, where, vms)
        lines, errors, seconds["containers"] = container_chain.result()
        removed, restored, failures, seconds["vms"] = vm_chain.result()
    seconds["nodes"] = _since(step)
    actions = lines + removed
    actions += [f"{vm}: {done['state']}" for vm, done in restored.items()]
    if errors or failures:
        raise snapshots.SnapshotError(
            f"restore of snapshot {name!r} of lab {lab!r} in place: " + "; ".join(errors + failures)
        )

    step = time.monotonic()
    wired, _, _ = wire(lab, request.bridge, request.ports, False)
    actions += [f"wire port {port['name']} in VLAN {port['vlan']}" for port in wired]
    errors = nodes.wait_ready(containers)
    if errors:
        raise snapshots.SnapshotError("; ".join(errors))
    seconds["wire_ready"] = _since(step)

    step = time.monotonic()
    resumed = [vm for vm, done in restored.items() if done["state"] == "resumed"]
    routes, warnings = snapshots.restore_runtime(lab, name, request.nodes, where, resumed=resumed)
    seconds["runtime"] = _since(step)
    warnings = [
        f"node {vm}: the memory saved in snapshot {name!r} could not be restored "
        f"({done['why']}); it booted from the snapshot's disk instead"
        for vm, done in restored.items()
        if done["state"] == "booted"
    ] + warnings
    return {
        "plan": plan,
        "in_place": True,
        "actions": actions,
        "vms": restored,
        "routes": routes,
        "warnings": warnings,
        "seconds": seconds,
    }


def _container_images(lab, name, plan, containers):
    """node name -> its committed image; a container node the snapshot has no image of is an
    error naming it."""
    images, missing = {}, []
    for node in containers:
        image = plan["nodes"].get(node["name"], {}).get("image")
        if image is None:
            missing.append(node["name"])
        images[node["name"]] = image
    if missing:
        raise snapshots.SnapshotError(
            f"snapshot {name!r} of lab {lab!r} has no image of container node {', '.join(missing)}"
        )
    return images


def _containers_again(request, nodes, docker, containers):
    """Every container of the lab removed, then each made again from its image: (action
    lines, errors naming the nodes, seconds)."""
    started = time.monotonic()
    removed, _, errors = containers_absent(docker, request.lab, 8, False)
    if errors:
        return [], [f"containers not removed: {'; '.join(errors)}"], _since(started)
    lines, errors = nodes.present(containers)
    return [f"remove container {c}" for c in removed] + lines, errors, _since(started)


def _vms_again(request, where, vms):
    """Every domain of the lab removed, then each VM restored, several at a time: (action
    lines, per VM its result, errors naming the nodes, seconds)."""
    started = time.monotonic()
    try:
        removed = domains_absent([request.node_prefix], where.libvirt_uri, False)
    except RemoveError as error:
        return [], {}, [f"domains not removed: {error}"], _since(started)
    if not vms:
        return removed, {}, [], _since(started)
    restored, failures = {}, []
    with ThreadPoolExecutor(max_workers=min(where.parallel, len(vms))) as pool:
        futures = [
            pool.submit(resume.restore_vm, node, disk, memory, xml, where, request.timeout)
            for node, disk, memory, xml in vms
        ]
        for (node, *_), future in zip(vms, futures, strict=True):
            try:
                restored[node["name"]] = future.result()
            except snapshots.SnapshotError as error:
                failures.append(f"node {node['name']}: {error}")
    return removed, restored, failures, _since(started)


def _would(request, where, plan, vms, containers, images, docker):
    """What a restore in place would change, in check mode."""
    removed, _, _ = containers_absent(docker, request.lab, 8, True)
    domains = domains_absent([request.node_prefix], where.libvirt_uri, True)
    actions = [f"remove container {c}" for c in removed] + domains
    actions += [
        f"{node['name']}: replace container {node['container_name']} by {images[node['name']]}"
        for node in containers
    ]
    actions += [
        f"{node['name']}: {'resume' if memory else 'boot'} VM {node['domain']} from {disk}"
        for node, disk, memory, _ in vms
    ]
    routes, _ = snapshots.restore_runtime(
        request.lab,
        request.name,
        request.nodes,
        where,
        check_mode=True,
        resumed=[node["name"] for node, _, memory, _ in vms if memory],
    )
    return {
        "plan": plan,
        "in_place": True,
        "actions": actions,
        "vms": {node["name"]: {"state": "would restore"} for node, *_ in vms},
        "routes": routes,
        "warnings": [],
        "seconds": {},
    }


def _since(start):
    return round(time.monotonic() - start, 3)


ERRORS = (snapshots.SnapshotError, DockerError, NodeError, VethError, OvsError)
