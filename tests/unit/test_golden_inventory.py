"""Golden inventories: the Ansible inventory that the real inventory plugin (ltb_topology) makes
of every example topology and every lab of ../shared/labs is pinned in tests/unit/golden/, so a
change to the contract between the model and the playbooks (host names, groups, variables, the
names and constants a lab creates on a hypervisor) shows up in review as a diff of these files.

The plugin allocates in a registry of the test's own (a fresh state directory per lab), never in
the live one, so each lab gets the tag and management subnet it would get on an empty machine.

After an intended change: `LTB_UPDATE_GOLDEN=1 pytest tests/unit/test_golden_inventory.py`
rewrites the files; review their diff and commit it with the change.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[2]
GOLDEN = Path(__file__).parent / "golden"
# A corpus next to the checkout; a checkout without it pins only its own examples.
SHARED = ROOT.parent / "shared" / "labs"
HYPERVISOR = "hv1"
UPDATE = os.environ.get("LTB_UPDATE_GOLDEN") == "1"
# Ansible's own bookkeeping of where a host was read from, not part of the contract.
ANSIBLE_VARS = ("inventory_file", "inventory_dir")


def _topologies() -> dict[str, Path]:
    """Golden file name -> topology, for the repository's examples and the shared labs."""
    found = {
        f"examples-{p.name[: -len('.lab.yml')]}": p for p in (ROOT / "examples").glob("*.lab.yml")
    }
    found |= {f"shared-{p.name[: -len('.lab.yml')]}": p for p in SHARED.glob("*.lab.yml")}
    return dict(sorted(found.items()))


TOPOLOGIES = _topologies()


class _Dumper(yaml.SafeDumper):
    """Block style for text of several lines (startup files), so a diff shows lines; every
    value written out in full (no YAML anchors), so a diff shows it where it changed."""

    def ignore_aliases(self, data):
        return True


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def _plugin():
    from ansible.plugins.loader import inventory_loader

    inventory_loader.add_directory(str(ROOT / "plugins" / "inventory"))
    plugin = inventory_loader.get("ltb_topology")
    assert plugin is not None, "ansible finds no inventory plugin ltb_topology in plugins/inventory"
    return plugin


def render(topology: Path, state_dir: Path) -> str:
    """The hosts, their variables and the groups that the plugin adds for `topology`, with the
    paths of this run (topology file, registry) written as placeholders."""
    from ansible.inventory.data import InventoryData
    from ansible.parsing.dataloader import DataLoader

    inventory = InventoryData()
    inventory.add_group("hypervisors")
    inventory.add_host(HYPERVISOR, group="hypervisors")
    _plugin().parse(inventory, DataLoader(), str(topology))

    hosts = {}
    for name, host in inventory.hosts.items():
        if name == HYPERVISOR:
            continue
        hosts[name] = {k: v for k, v in host.vars.items() if k not in ANSIBLE_VARS}
    groups = {
        name: [h.name for h in group.hosts]
        for name, group in inventory.groups.items()
        if name not in ("all", "ungrouped", "hypervisors")
    }
    # What all nodes of a lab share (its network) the plugin sets once, on the lab's group.
    group_vars = {
        name: dict(group.vars)
        for name, group in inventory.groups.items()
        if name not in ("all", "ungrouped", "hypervisors") and group.vars
    }
    text = yaml.dump(
        {"hosts": hosts, "groups": groups, "group_vars": group_vars},
        Dumper=_Dumper,
        sort_keys=False,
        width=100,
    )
    text = text.replace(str(topology.resolve()), "<topology>").replace(
        str(state_dir), "<state_dir>"
    )
    return text


@pytest.mark.parametrize("name", TOPOLOGIES)
def test_inventory_of_the_lab_is_the_golden_one(name, tmp_path, monkeypatch):
    state_dir = tmp_path / "state"
    monkeypatch.setenv("LTB_STATE_DIR", str(state_dir))
    monkeypatch.delenv("LTB_HYPERVISOR", raising=False)
    rendered = render(TOPOLOGIES[name], state_dir)
    golden = GOLDEN / f"{name}.yml"
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        golden.write_text(rendered)
        return
    if not golden.exists():
        pytest.fail(f"{golden} is missing; write it with LTB_UPDATE_GOLDEN=1 and review it")
    expected = golden.read_text()
    if rendered != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                rendered.splitlines(keepends=True),
                fromfile=f"golden/{golden.name}",
                tofile=f"rendered from {TOPOLOGIES[name]}",
            )
        )
        pytest.fail(
            f"the inventory of {TOPOLOGIES[name].name} differs from {golden}:\n{diff}\n"
            "If the change is intended: LTB_UPDATE_GOLDEN=1 pytest "
            "tests/unit/test_golden_inventory.py, and commit the files with it.",
            pytrace=False,
        )


def test_every_golden_file_belongs_to_a_lab():
    stale = sorted(
        p.stem
        for p in GOLDEN.glob("*.yml")
        if p.stem not in TOPOLOGIES and (SHARED.is_dir() or not p.stem.startswith("shared-"))
    )
    if UPDATE:
        for name in stale:
            (GOLDEN / f"{name}.yml").unlink()
        return
    assert not stale, f"golden files of labs that no longer exist: {stale}; delete them"
