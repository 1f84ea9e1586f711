"""Every plugin's DOCUMENTATION, EXAMPLES and RETURN are valid YAML: Ansible parses them
(ansible-doc, argument checks of inventory plugins), and one bad line in an inventory plugin's
documentation stops every playbook run."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

# module_utils are code the modules import, not plugins: they carry no documentation; nor do
# action plugins, the controller's half of the module of their name, which documents both.
PLUGINS = sorted(
    path
    for path in (Path(__file__).parents[2] / "plugins").glob("*/*.py")
    if path.parent.name not in ("module_utils", "action")
)
DOC_BLOCKS = ("DOCUMENTATION", "EXAMPLES", "RETURN")


def doc_blocks(path: Path) -> dict[str, str]:
    blocks = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id in DOC_BLOCKS:
                    blocks[target.id] = node.value.value
    return blocks


@pytest.mark.parametrize("path", PLUGINS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_plugin_documentation_is_valid_yaml(path: Path) -> None:
    blocks = doc_blocks(path)
    assert "DOCUMENTATION" in blocks, f"{path.name} has no DOCUMENTATION"
    for name, text in blocks.items():
        try:
            yaml.safe_load(text)
        except yaml.YAMLError as error:
            pytest.fail(f"{path.name} {name} is not valid YAML: {error}")
