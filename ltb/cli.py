"""`ltb` command line: validate topologies, publish the schema, show how to reach a lab.

python -m ltb validate FILE...     every error and warning of each file, exit 1 on errors
python -m ltb schema               JSON Schema of the topology format
python -m ltb reach FILE           how to reach every node of a deployed lab
python -m ltb resources LAB        what a lab has created on this hypervisor
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ltb import kinds
from ltb.allocation import Registry
from ltb.deployed import DEFAULT_STATE_DIR, LabNotDeployed, load_deployed_lab
from ltb.model import Lab
from ltb.topology import TopologyError, load_lab


def validate(paths: Sequence[str]) -> int:
    status = 0
    for path in paths:
        try:
            lab = load_lab(path)
        except TopologyError as error:
            print(error, file=sys.stderr)
            status = 1
        else:
            print(
                f"{path}: lab {lab.name!r} is valid ({len(lab.nodes)} nodes, "
                f"{len(lab.links)} links)"
            )
            # Warnings do not fail the file: they name what is allowed but often a mistake.
            for warning in lab.warnings:
                print(f"{path}: warning: {warning}", file=sys.stderr)
    return status


def schema() -> int:
    from ltb.schema import topology_schema

    print(json.dumps(topology_schema(), indent=2))
    return 0


def as_allocated(lab: Lab, state_dir: Path = DEFAULT_STATE_DIR) -> tuple[Lab, str | None]:
    """The lab under the names and addresses it really has: those it was deployed with here,
    else those the controller's registry holds for it; else its preferred ones, with a note."""
    try:
        return load_deployed_lab(lab.name, state_dir), None
    except LabNotDeployed:
        pass
    held = Registry(state_dir).held().get(lab.name)
    if held is not None:
        return lab.with_allocation(held.allocation), None
    return lab, f"lab {lab.name} is not deployed: these are the addresses it would prefer"


def reach(path: str, ssh_key: str, state_dir: Path = DEFAULT_STATE_DIR) -> int:
    lab, note = as_allocated(load_lab(path), state_dir)
    if note:
        print(f"Note: {note}", file=sys.stderr)
    print(
        f"Lab {lab.name}: management network {lab.mgmt_subnet}, "
        f"hypervisor at {lab.mgmt_gateway.ip} on {lab.mgmt_port}"
    )
    width = max(len(node.name) for node in lab.nodes)
    for node in lab.nodes:
        shell = kinds.get(node.kind).shell(lab, node)
        print(
            f"  {node.name:<{width}}  ssh -i {ssh_key} root@{node.mgmt_ipv4.ip}"
            + (f"    {shell}" if shell else "")
        )
    print(
        f"Ansible: ansible -i inventory/ -i {path} {lab.nodes[0].name} "
        "-m ansible.builtin.command -a 'ip -br addr'"
    )
    print(f"Remove:  ansible-playbook -i inventory/ -i {path} playbooks/remove.yml")
    return 0


def resources(lab: str) -> int:
    from ltb.resources import KINDS, find_lab_resources

    found = find_lab_resources(lab)
    for kind in KINDS:
        names = getattr(found, kind)
        print(f"{kind}: {' '.join(names) if names else '-'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ltb", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("validate", help="validate topology files").add_argument("paths", nargs="+")
    commands.add_parser("schema", help="print the topology JSON Schema")
    reach_parser = commands.add_parser("reach", help="how to reach the nodes of a lab")
    reach_parser.add_argument("path")
    reach_parser.add_argument("--ssh-key", default="/var/lib/ltb/ssh/id_ed25519")
    reach_parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    commands.add_parser("resources", help="list a lab's resources here").add_argument("lab")
    args = parser.parse_args(argv)
    if args.command == "validate":
        return validate(args.paths)
    if args.command == "schema":
        return schema()
    if args.command == "reach":
        return reach(args.path, args.ssh_key, args.state_dir)
    return resources(args.lab)
