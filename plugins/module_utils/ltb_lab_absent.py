# LTB module_utils: a lab's pieces on a hypervisor removed, found by the lab's identity (its
# containers' label, its domains' name prefix, its bridge's external_ids, its interfaces'
# alias, its state directory): the one place of each removal. ltb_lab_remove removes a lab
# with all of them in one module run; ltb_lab_containers, ltb_snapshot (resume) and ltb_lab_bridge
# (state=absent) each one piece. Every function reports what it removed (in check mode, what
# it would) as action lines, and removes nothing in check mode.
from __future__ import annotations

import json
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.ltb_docker import DockerError
from ansible.module_utils.ltb_names import LAB_NAME
from ansible.module_utils.ltb_ovs import rows, vsctl
from ansible.module_utils.ltb_veth import Netlink, delete_link
from ansible.module_utils.ltb_veth import ensure_absent as interfaces_absent


# Stopping and undefining a domain is libvirtd's work; a few at once keep it busy enough.
DOMAIN_PARALLEL = 4
UNDEFINE_FLAGS = ("--managed-save", "--snapshots-metadata", "--checkpoints-metadata", "--nvram")


class RemoveError(RuntimeError):
    """A piece of a lab that could not be removed; the message names it."""


def _run_all(parallel, work, items):
    """work(item) -> error or None for all items, several at a time; the errors."""
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(items)))) as pool:
        return [error for error in pool.map(work, items) if error]


# Containers -------------------------------------------------------------------------------------


def containers_absent(docker, lab, parallel, check_mode):
    """Removes every container labelled with the lab (also those no topology names any more),
    `parallel` at a time, and then the lab's untagged images (a snapshot's image deleted while a
    container of the lab still ran from it loses its tag but stays, labelled with the lab).
    Returns (containers, images, errors): what was (would be) removed and what failed."""
    label = f"ltb.lab={lab}"
    found = sorted(
        c["Names"][0].lstrip("/") if c.get("Names") else c["Id"]
        for c in docker.containers_labelled(label)
    )
    filters = json.dumps({"dangling": ["true"], "label": [label]})
    images = [i["Id"] for i in docker.get_json("/images/json", {"filters": filters})]
    if check_mode:
        return found, images, []

    def one(container):
        try:
            docker.remove(container)
        except DockerError as error:
            return f"{container}: {error}"
        return None

    errors = _run_all(parallel, one, found)
    failed = {error.split(":", 1)[0] for error in errors}
    if images and not errors:
        docker.request("POST", "/images/prune", {"filters": filters})
    return [c for c in found if c not in failed], images, errors


def container_actions(containers, images):
    return [f"remove container {c}" for c in containers] + [
        f"remove untagged image {i}" for i in images
    ]


# VM domains -------------------------------------------------------------------------------------


class Virsh:
    def __init__(self, binary, uri):
        self.binary, self.uri = binary, uri

    def run(self, *args):
        done = subprocess.run(
            [self.binary, "-q", "-c", self.uri, *args], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RemoveError(f"virsh {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def names(self, *args):
        return {line.strip() for line in self.run("list", "--name", *args).splitlines()} - {""}


def _remove_domain(virsh, name, active):
    if name in active:
        try:
            virsh.run("destroy", name)
        except RemoveError:
            # It may have stopped on its own since the read.
            if name in virsh.names():
                raise
    try:
        virsh.run("undefine", name, *UNDEFINE_FLAGS)
    except RemoveError:
        # A transient domain is gone once stopped: nothing to undefine.
        if name in virsh.names("--all"):
            raise


def domains_absent(prefixes, libvirt_uri, check_mode):
    """Stops and undefines (with managed save, snapshot and checkpoint metadata and NVRAM)
    every domain whose name starts with one of `prefixes` (a lab's node name prefix
    `ltb-<lab>.`), also those the topology no longer names. One `virsh list` for all prefixes;
    without virsh no domain can exist. Returns the action lines; raises RemoveError."""
    prefixes = tuple(prefixes)
    if not all(prefixes):
        # An empty prefix would name every domain of the hypervisor.
        raise RemoveError("an empty node name prefix would name every domain; nothing removed")
    binary = shutil.which("virsh")
    if binary is None or not prefixes:
        return []
    virsh = Virsh(binary, libvirt_uri)
    found = sorted(name for name in virsh.names("--all") if name.startswith(prefixes))
    if found and not check_mode:
        active = virsh.names()
        with ThreadPoolExecutor(max_workers=DOMAIN_PARALLEL) as pool:
            for future in [pool.submit(_remove_domain, virsh, name, active) for name in found]:
                future.result()
    return [f"remove domain {name}" for name in found]


# Network ----------------------------------------------------------------------------------------


def lab_bridge(lab, bridge):
    """The lab's bridge row (None when there is none); raises RemoveError, naming the owner,
    when the bridge belongs to another lab."""
    columns = ("name", "datapath_type", "other_config", "external_ids")
    found = next(iter(rows("Bridge", columns, f"name={bridge}")), None)
    owner = ((found or {}).get("external_ids") or {}).get("ltb-lab", "")
    if owner not in ("", lab):
        raise RemoveError(
            f"Open vSwitch bridge {bridge} belongs to lab {owner!r}, not {lab!r}: the "
            "allocation registry does not hold that lab (another controller deployed it, or "
            f"the registry lost it). Remove lab {owner!r} first, or rename one of the labs."
        )
    return found


def bridge_absent(bridge, found, check_mode):
    """Deletes the lab's bridge `found` (lab_bridge; None: there is none) with all its ports.
    Returns the action lines."""
    if found is None:
        return []
    if not check_mode:
        vsctl("--if-exists", "del-br", bridge)
    return [f"delete bridge {bridge} with its ports"]


def network_absent(lab, bridge, found, tag, state_dir, check_mode):
    """Removes the lab's bridge `found` (lab_bridge; None: there is none or it is gone) with
    its ports, every hypervisor interface whose alias is ltb:<lab>:... (veth ends, the tunnel
    device), every unlabelled one named like a host end or the tunnel device of the lab's tag,
    and the lab's state directory <state_dir>/labs/<lab>. Returns the action lines."""
    if not LAB_NAME.fullmatch(lab):
        raise RemoveError(f"lab name {lab!r} is not a lab name: nothing removed")
    actions = bridge_absent(bridge, found, check_mode)
    # By alias ltb:<lab>:... (veth ends and the tunnel device) and unlabelled host ends.
    actions += interfaces_absent(lab, tag, check_mode)
    # A deploy killed between making the tunnel device and labelling it leaves it unlabelled.
    tunnel = f"ltt-{tag}"
    if os.path.exists(f"/sys/class/net/{tunnel}") and f"delete {tunnel}" not in actions:
        host = Netlink()
        if not host.links().get(tunnel, {}).get("ifalias", ""):
            actions.append(f"delete {tunnel}")
            if not check_mode:
                delete_link(host, tunnel)
    state = os.path.join(state_dir, "labs", lab)
    if os.path.lexists(state):
        actions.append(f"remove {state}")
        if not check_mode:
            if os.path.isdir(state) and not os.path.islink(state):
                shutil.rmtree(state)
            else:
                os.unlink(state)
    return actions
