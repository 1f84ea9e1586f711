#!/usr/bin/python
# LTB module: no libvirt domain of the given labs is left on the hypervisor (remove's VM sweep).
from __future__ import annotations

DOCUMENTATION = r"""
module: ltb_lab_domains
short_description: Removes every libvirt domain whose name starts with a lab's node prefix
description:
  - Runs on the hypervisor with any Python 3 (standard library only) and C(virsh).
  - Reads the names of all domains once (C(virsh list --all --name)); every domain whose name
    starts with one of O(prefixes) (C(Lab.node_name_prefix) from ltb.model, C(ltb-<lab>.)) is
    stopped if it runs and undefined with its managed save, snapshot and checkpoint metadata
    and NVRAM - also domains the topology no longer names or a failed deploy left. Several at
    a time. With no such domain, that one read is all it does (a lab without VMs costs one
    C(virsh) process). Without C(virsh) on the hypervisor no domain can exist, so there is
    nothing to do.
  - Check mode reports what would be removed, with a diff.
options:
  prefixes:
    description: Node name prefixes of the labs whose domains go (C(ltb_labs_here[].node_prefix)).
    type: list
    elements: str
    required: true
  libvirt_uri:
    description: The libvirt connection.
    type: str
    default: qemu:///system
  state:
    description: Only V(absent).
    type: str
    choices: [absent]
    default: absent
"""

RETURN = r"""
actions:
  description: What was removed (in check mode, what would be).
  type: list
  elements: str
  returned: always
"""

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.basic import AnsibleModule

# Stopping and undefining a domain is libvirtd's work; a few at once keep it busy enough.
PARALLEL = 4
UNDEFINE_FLAGS = ("--managed-save", "--snapshots-metadata", "--checkpoints-metadata", "--nvram")


class VirshError(RuntimeError):
    pass


class Virsh:
    def __init__(self, binary, uri):
        self.binary, self.uri = binary, uri

    def run(self, *args):
        done = subprocess.run(
            [self.binary, "-q", "-c", self.uri, *args], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise VirshError(f"virsh {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def names(self, *args):
        return {line.strip() for line in self.run("list", "--name", *args).splitlines()} - {""}


def remove(virsh, name, active):
    if name in active:
        try:
            virsh.run("destroy", name)
        except VirshError:
            # It may have stopped on its own since the read.
            if name in virsh.names():
                raise
    try:
        virsh.run("undefine", name, *UNDEFINE_FLAGS)
    except VirshError:
        # A transient domain is gone once stopped: nothing to undefine.
        if name in virsh.names("--all"):
            raise


def main():
    module = AnsibleModule(
        argument_spec=dict(
            prefixes=dict(type="list", elements="str", required=True),
            libvirt_uri=dict(type="str", default="qemu:///system"),
            state=dict(type="str", choices=["absent"], default="absent"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    # An empty prefix would match every domain of the hypervisor.
    prefixes = tuple(prefix for prefix in p["prefixes"] if prefix)
    if len(prefixes) != len(p["prefixes"]):
        module.fail_json(msg="prefixes: an empty prefix would name every domain; nothing removed")
    binary = shutil.which("virsh")
    if binary is None or not prefixes:
        module.exit_json(changed=False, actions=[])
    virsh = Virsh(binary, p["libvirt_uri"])
    try:
        found = sorted(name for name in virsh.names("--all") if name.startswith(prefixes))
        actions = [f"remove domain {name}" for name in found]
        if found and not module.check_mode:
            active = virsh.names()
            with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
                for future in [pool.submit(remove, virsh, name, active) for name in found]:
                    future.result()
    except (VirshError, OSError) as error:
        module.fail_json(msg=f"domains of {', '.join(prefixes)} not removed: {error}")
    module.exit_json(
        changed=bool(actions),
        actions=actions,
        diff={"before": "".join(a + "\n" for a in actions), "after": ""},
    )


if __name__ == "__main__":
    main()
