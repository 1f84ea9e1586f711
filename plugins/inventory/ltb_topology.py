# LTB inventory plugin: a lab topology file becomes Ansible hosts and groups.
from __future__ import annotations

DOCUMENTATION = r"""
name: ltb_topology
short_description: Lab nodes of an LTB topology file as Ansible hosts
description:
  - Reads an LTB lab topology (a file named C(*.lab.yml)), validates it
    with the LTB lab model and adds one host per lab node, with the node's variables
    (C(ltb_node), C(ltb_lab_network), C(ltb_hypervisor)) and connection settings.
  - Groups are C(ltb_nodes), C(lab_<lab>), one per node kind (C(containers)) and the
    topology's own groups ('-' becomes '_').
  - The lab runs on the first host of group C(hypervisors) loaded before this file
    (e.g. with C(-i inventory/)), or on C(localhost) when there is none.
  - The lab gets its tag and management subnet from the controller's allocation registry
    (C(<state_dir>/allocations.json), see C(ltb.allocation)), the ones it holds already or
    ones no other lab holds, recorded there. Remove releases them. A check-mode run
    (C(--check)) uses the allocation a real run would record and records nothing.
  - A job of the lab store gives the lab's allocation instead (O(allocation)), and the run
    uses it and touches no registry file; the store releases it.
options:
  allocation:
    description:
      - The lab's tag and management subnet as C(<tag>/<subnet>), held in the lab store
        (C(store.allocations)); set by the job that runs the playbook.
    type: str
    env:
      - name: LTB_ALLOCATION
  hypervisor:
    description: Hypervisor that runs the lab; overrides the first host of C(hypervisors).
    type: str
    env:
      - name: LTB_HYPERVISOR
  state_dir:
    description: LTB's state directory on the controller, which holds the allocation registry.
    type: path
    default: /var/lib/ltb
    env:
      - name: LTB_STATE_DIR
"""

EXAMPLES = r"""
# ansible-playbook -i inventory/ -i examples/ospf-triangle.lab.yml playbooks/deploy.yml
"""

import os

from ansible import context
from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin

try:
    from ltb.allocation import Registry, parse_allocation_text
    from ltb.deployed import deployed_allocation
    from ltb.inventory import lab_group, node_hypervisors, render_inventory
    from ltb.topology import TopologyError, load_lab
except ImportError as import_error:  # pragma: no cover - shown to the operator
    LTB_IMPORT_ERROR: ImportError | None = import_error
else:
    LTB_IMPORT_ERROR = None

SUFFIXES = (".lab.yml",)


class InventoryModule(BaseInventoryPlugin):
    NAME = "ltb_topology"

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith(SUFFIXES)

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        if LTB_IMPORT_ERROR is not None:
            raise AnsibleParserError(
                f"the ltb package is not importable ({LTB_IMPORT_ERROR}); run `make up`"
            )
        # Options come from the environment only: the topology file is not plugin config.
        self._consume_options({})
        hypervisor = self.get_option("hypervisor") or self._first_hypervisor()
        known = self.inventory.groups.get("hypervisors")
        if known is not None and hypervisor not in [h.name for h in known.get_hosts()]:
            raise AnsibleParserError(
                f"{path}: hypervisor {hypervisor!r} (LTB_HYPERVISOR) is not in group hypervisors"
            )
        # Allocated only for a valid topology on known hypervisors.
        registry = Registry(self.get_option("state_dir"))
        given = self.get_option("allocation")

        def allocate(parsed, mgmt_subnet):
            self._check_node_hypervisors(path, parsed, hypervisor, known)
            if given:
                return self._given_allocation(path, given, mgmt_subnet)
            deployed = deployed_allocation(parsed.name, registry.state_dir)
            # A check-mode run changes nothing, the controller's registry included.
            record = not context.CLIARGS.get("check", False)
            return registry.allocate(parsed, mgmt_subnet, deployed, record=record)

        try:
            lab = load_lab(path, allocate)
        except TopologyError as error:
            raise AnsibleParserError(str(error)) from None
        except OSError as error:
            raise AnsibleParserError(
                f"{path}: cannot allocate the lab's tag and subnet in {registry.path}: {error}"
            ) from None
        # Allowed but often a mistake (a subnet on two links): said, and the run goes on.
        for warning in lab.warnings:
            self.display.warning(f"{path}: {warning}")

        try:
            data = render_inventory(
                lab,
                hypervisor,
                os.path.abspath(path),
                "" if given else str(registry.path),  # where remove releases
                self._tunnel_addresses(lab, hypervisor),
            )
        except ValueError as error:
            raise AnsibleParserError(f"{path}: {error}") from None
        # Variables that every node of the lab shares (the lab's network, with its ports) are
        # set once on the lab's group: Ansible walks each value it is given (to tag it), and
        # one copy per node cost 15 s and 250 MiB for a 200-node lab.
        lab_vars = {
            key: value
            for key, value in next(iter(data.hosts.values()), {}).items()
            if key == "ltb_lab_network"
            and all(host_vars[key] is value for host_vars in data.hosts.values())
        }
        for host, host_vars in data.hosts.items():
            existing = inventory.get_host(host)
            if existing is not None and existing.vars.get("ltb_lab") != lab.name:
                owner = existing.vars.get("ltb_lab")
                what = f"a node of lab {owner!r}" if owner else "a host of the inventory"
                raise AnsibleParserError(
                    f"{path}: node {host!r} has the name of {what}; rename the node "
                    "(or give one lab per ansible-playbook run)"
                )
            inventory.add_host(host)
            for key, value in host_vars.items():
                if key not in lab_vars:
                    inventory.set_variable(host, key, value)
        for group, hosts in data.groups.items():
            inventory.add_group(group)
            for host in hosts:
                inventory.add_child(group, host)
        for key, value in lab_vars.items():
            inventory.set_variable(lab_group(lab.name), key, value)

    @staticmethod
    def _given_allocation(path, text, mgmt_subnet):
        """The allocation a job gives (LTB_ALLOCATION), checked against the topology."""
        try:
            allocation = parse_allocation_text(text)
        except ValueError as error:
            raise AnsibleParserError(f"{path}: LTB_ALLOCATION: {error}") from None
        if mgmt_subnet is not None and allocation.mgmt_subnet != mgmt_subnet:
            raise AnsibleParserError(
                f"{path}: LTB_ALLOCATION holds subnet {allocation.mgmt_subnet}, but the "
                f"topology's mgmt.ipv4_subnet is {mgmt_subnet}: the lab store's allocation "
                "is of another topology"
            )
        return allocation

    @staticmethod
    def _check_node_hypervisors(path, lab, hypervisor, known):
        """Every hypervisor a node names must be in group hypervisors."""
        names = [h.name for h in known.get_hosts()] if known is not None else [hypervisor]
        for node in lab.nodes:
            if node.hypervisor is not None and node.hypervisor not in names:
                raise AnsibleParserError(
                    f"{path}: node {node.name!r}: hypervisor {node.hypervisor!r} is not in "
                    f"group hypervisors (known: {', '.join(names)})"
                )

    def _tunnel_addresses(self, lab, hypervisor):
        """Each hypervisor of a spread lab and its underlay address (host var
        ltb_tunnel_address, else ansible_host)."""
        hypervisors = set(node_hypervisors(lab, hypervisor).values())
        if len(hypervisors) == 1:
            return {}
        addresses = {}
        for name in hypervisors:
            host_vars = self.inventory.get_host(name).vars
            addresses[name] = host_vars.get("ltb_tunnel_address") or host_vars.get("ansible_host")
        return addresses

    def _first_hypervisor(self):
        group = self.inventory.groups.get("hypervisors")
        if group is None or not group.get_hosts():
            return "localhost"
        return group.get_hosts()[0].name
