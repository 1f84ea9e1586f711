"""The published JSON Schema is current and accepts the shipped examples."""

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from ltb.schema import topology_schema

ROOT = Path(__file__).parents[2]


def test_published_schema_matches_the_spec():
    published = json.loads((ROOT / "schemas" / "topology.schema.json").read_text())
    assert published == topology_schema(), (
        "run: python -m ltb schema > schemas/topology.schema.json"
    )


@pytest.mark.parametrize("example", sorted((ROOT / "examples").glob("*.lab.yml")), ids=str)
def test_examples_are_valid_against_the_schema(example):
    jsonschema.validate(yaml.safe_load(example.read_text()), topology_schema())


def test_schema_rejects_unknown_keys():
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "x", "nodes": {"a": {"imgae": "y"}}}, topology_schema())
