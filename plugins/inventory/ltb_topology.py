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
  cache:
    description:
      - Keep each rendered topology in Ansible's inventory cache, so that a later run of the
        same topology (a remove after the deploy) neither imports nor validates it again.
      - An entry is used only for the same topology text, hypervisors, LTB code and
        O(state_dir) or O(allocation), and, without O(allocation), only while the registry
        still holds the allocation it was rendered with; otherwise the topology is read
        as without a cache (and its errors are the same).
    type: bool
    default: true
    env:
      - name: ANSIBLE_INVENTORY_CACHE
    ini:
      - section: inventory
        key: cache
  cache_plugin:
    description: Cache plugin of the rendered topologies.
    type: str
    default: jsonfile
    env:
      - name: ANSIBLE_INVENTORY_CACHE_PLUGIN
    ini:
      - section: inventory
        key: cache_plugin
  cache_connection:
    description: Where the cache plugin keeps them; unset, C(<state_dir>/inventory-cache).
    type: str
    env:
      - name: ANSIBLE_INVENTORY_CACHE_CONNECTION
    ini:
      - section: inventory
        key: cache_connection
  cache_timeout:
    description:
      - Seconds an entry is used; older ones are read again and deleted when an entry is
        written (entries of topologies no run reads any more do not pile up).
    type: int
    default: 86400
    env:
      - name: ANSIBLE_INVENTORY_CACHE_TIMEOUT
    ini:
      - section: inventory
        key: cache_timeout
  cache_prefix:
    description: Start of the names of the cache's entries.
    type: str
    default: ltb_topology_
    env:
      - name: ANSIBLE_INVENTORY_CACHE_PLUGIN_PREFIX
    ini:
      - section: inventory
        key: cache_prefix
"""

EXAMPLES = r"""
# ansible-playbook -i inventory/ -i examples/ospf-triangle.lab.yml playbooks/deploy.yml
"""

import hashlib
import importlib.util
import json
import os
import time
from pathlib import Path

from ansible import context
from ansible.errors import AnsibleError, AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable

# The ltb package (pydantic models, validation) is imported only when a topology is read, not
# for a run whose rendering is in the cache: that import alone costs ~0.15 CPU-s.

SUFFIXES = (".lab.yml",)
# Bump when the shape of a cache entry changes.
CACHE_FORMAT = 1
# Larger files are not looked up in the cache: load_lab refuses them with its own error.
MAX_CACHED_BYTES = 16 * 1024 * 1024
REGISTRY_FILE = "allocations.json"  # ltb.allocation.REGISTRY_FILE, read on a hit


class InventoryModule(BaseInventoryPlugin, Cacheable):
    NAME = "ltb_topology"

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith(SUFFIXES)

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        # Options come from the environment only: the topology file is not plugin config.
        self._consume_options({})
        hypervisor = self.get_option("hypervisor") or self._first_hypervisor()
        known = self.inventory.groups.get("hypervisors")
        if known is not None and hypervisor not in [h.name for h in known.get_hosts()]:
            raise AnsibleParserError(
                f"{path}: hypervisor {hypervisor!r} (LTB_HYPERVISOR) is not in group hypervisors"
            )
        key = self._rendering_key(path, hypervisor, known) if self.get_option("cache") else None
        rendered = None
        # cache=False: the caller asked for a fresh read (ansible-inventory --flush-cache). No
        # cache directory yet: nothing to read, and none made for a topology with errors.
        if key is not None and cache and self._cache_exists() and self._load_cache():
            rendered = self._cached(key)
        if rendered is None:
            rendered = self._render(path, hypervisor, known)
            # A check-mode run writes nothing (its allocation is not recorded anyway), and the
            # cache never makes the state directory (a job's run with none has no registry).
            if key is not None and self._may_write_cache() and self._load_cache():
                self._cache[key] = rendered  # written by the inventory manager after parse
                self._forget_expired()
        self._populate(path, rendered)

    # Reading a topology --------------------------------------------------------------------

    def _render(self, path, hypervisor, known):
        """The lab's hosts, groups and networks, from the topology file: validated, its
        allocation taken from the registry (or LTB_ALLOCATION), as plain data."""
        try:
            from ltb.allocation import Registry
            from ltb.deployed import deployed_allocation
            from ltb.inventory import lab_group, render_inventory
            from ltb.topology import TopologyError, load_lab
        except ImportError as error:  # pragma: no cover - shown to the operator
            raise AnsibleParserError(
                f"the ltb package is not importable ({error}); run `make up`"
            ) from None
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
        # Each hypervisor's network once (every node there shares it), apart from the hosts:
        # so a rendering read back from the cache shares it again (see _populate).
        networks, hosts = {}, {}
        for host, host_vars in data.hosts.items():
            networks.setdefault(host_vars["ltb_hypervisor"], host_vars["ltb_lab_network"])
            hosts[host] = {k: v for k, v in host_vars.items() if k != "ltb_lab_network"}
        # As JSON would give it back, so that a cached rendering and a fresh one are the same.
        return json.loads(
            json.dumps(
                {
                    "lab": lab.name,
                    "lab_group": lab_group(lab.name),
                    "allocation": None
                    if given
                    else {"tag": lab.tag, "mgmt_subnet": str(lab.mgmt_subnet)},
                    "warnings": [str(warning) for warning in lab.warnings],
                    "networks": networks,
                    "hosts": hosts,
                    "groups": data.groups,
                }
            )
        )

    def _populate(self, path, rendered):
        # Allowed but often a mistake (a subnet on two links): said, and the run goes on.
        for warning in rendered["warnings"]:
            self.display.warning(f"{path}: {warning}")
        lab = rendered["lab"]
        # The path this run read (a cached rendering may be of a copy elsewhere).
        networks = {
            name: {**network, "topology_file": os.path.abspath(path)}
            for name, network in rendered["networks"].items()
        }
        for host, host_vars in rendered["hosts"].items():
            existing = self.inventory.get_host(host)
            if existing is not None and existing.vars.get("ltb_lab") != lab:
                owner = existing.vars.get("ltb_lab")
                what = f"a node of lab {owner!r}" if owner else "a host of the inventory"
                raise AnsibleParserError(
                    f"{path}: node {host!r} has the name of {what}; rename the node "
                    "(or give one lab per ansible-playbook run)"
                )
            self.inventory.add_host(host)
            for key, value in host_vars.items():
                self.inventory.set_variable(host, key, value)
            # Variables that every node of the lab shares (the lab's network, with its ports)
            # are set once on the lab's group: Ansible walks each value it is given (to tag
            # it), and one copy per node cost 15 s and 250 MiB for a 200-node lab.
            if len(networks) > 1:
                self.inventory.set_variable(
                    host, "ltb_lab_network", networks[host_vars["ltb_hypervisor"]]
                )
        for group, hosts in rendered["groups"].items():
            self.inventory.add_group(group)
            for host in hosts:
                self.inventory.add_child(group, host)
        if len(networks) == 1:
            self.inventory.set_variable(
                rendered["lab_group"], "ltb_lab_network", next(iter(networks.values()))
            )

    # The cache -----------------------------------------------------------------------------

    def _rendering_key(self, path, hypervisor, known):
        """A digest of everything a rendering depends on; None when it cannot be known (the
        file unreadable or too large, ltb not installed): then the cache is not used."""
        spec = importlib.util.find_spec("ltb")  # finds the package, imports nothing
        if spec is None or not spec.submodule_search_locations:
            return None
        try:
            with open(path, "rb") as file:
                text = file.read(MAX_CACHED_BYTES + 1)
            # The code that renders: its version is its files (edited in place in a checkout).
            sources = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.py"))
            code = [(p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in sources]
            own = os.stat(__file__)
            code.append(("ltb_topology", own.st_mtime_ns, own.st_size))
        except OSError:
            return None
        if len(text) > MAX_CACHED_BYTES:
            return None
        hypervisors = []
        if known is not None:
            for host in known.get_hosts():
                tunnel = host.vars.get("ltb_tunnel_address") or host.vars.get("ansible_host")
                hypervisors.append([host.name, str(tunnel or "")])
        ingredients = {
            "format": CACHE_FORMAT,
            "topology": hashlib.sha256(text).hexdigest(),
            "hypervisor": hypervisor,
            "hypervisors": hypervisors,
            "allocation": self.get_option("allocation") or "",
            "state_dir": str(self.get_option("state_dir")),
            "code": code,
        }
        return hashlib.sha256(json.dumps(ingredients, sort_keys=True).encode()).hexdigest()

    def _cache_connection(self):
        connection = self.get_option("cache_connection")
        return connection or str(Path(self.get_option("state_dir")) / "inventory-cache")

    def _cache_exists(self):
        """False when the jsonfile cache's directory is missing (loading it would make it)."""
        jsonfile = self.get_option("cache_plugin") in JSONFILE
        return not jsonfile or os.path.isdir(self._cache_connection())

    def _may_write_cache(self):
        if context.CLIARGS.get("check", False):
            return False
        return bool(self.get_option("cache_connection")) or os.path.isdir(
            self.get_option("state_dir")
        )

    def _load_cache(self):
        """Loads the cache plugin (once); False when it cannot be loaded."""
        if getattr(self, "_cache", None) is not None:
            return True
        self.set_option("cache_connection", self._cache_connection())
        try:
            self.load_cache_plugin()
        except AnsibleError as error:  # the topology is read as without a cache
            self.display.warning(f"ltb_topology: inventory cache not used: {error}")
            return False
        return True

    def _cached(self, key):
        """The cached rendering of `key`, None when there is none or it may no longer hold."""
        try:
            rendered = self._cache[key]
        except (KeyError, AnsibleError):  # none, or a damaged entry: read the topology
            return None
        if not isinstance(rendered, dict) or set(rendered) != RENDERED_KEYS:
            return None
        allocation = rendered["allocation"]
        if allocation is None:  # LTB_ALLOCATION's, which is part of the key
            return rendered
        # Only while the registry still holds the allocation the rendering has: a lab removed
        # since (its allocation released) is allocated again, and recorded, by a fresh read.
        registry = Path(self.get_option("state_dir")) / REGISTRY_FILE
        try:
            held = json.loads(registry.read_text(encoding="utf-8"))["labs"].get(rendered["lab"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        if not isinstance(held, dict):
            return None
        if (held.get("tag"), held.get("mgmt_subnet")) != (
            allocation["tag"],
            allocation["mgmt_subnet"],
        ):
            return None
        return rendered

    def _forget_expired(self):
        """Deletes entries older than the cache's timeout (jsonfile keeps them forever)."""
        directory = Path(self._cache_connection())
        prefix, timeout = self.get_option("cache_prefix"), self.get_option("cache_timeout")
        if not timeout or self.get_option("cache_plugin") not in JSONFILE:
            return
        oldest = time.time() - timeout
        try:
            for entry in os.scandir(directory):
                if entry.name.startswith(prefix) and entry.stat().st_mtime < oldest:
                    os.unlink(entry.path)
        except OSError:  # another run deleted it first, or no directory yet
            pass

    # Checks --------------------------------------------------------------------------------

    @staticmethod
    def _given_allocation(path, text, mgmt_subnet):
        """The allocation a job gives (LTB_ALLOCATION), checked against the topology."""
        from ltb.allocation import parse_allocation_text

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
        from ltb.inventory import node_hypervisors

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


RENDERED_KEYS = {"lab", "lab_group", "allocation", "warnings", "networks", "hosts", "groups"}
JSONFILE = ("jsonfile", "ansible.builtin.jsonfile")
