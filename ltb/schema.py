"""The JSON Schema of the topology format, generated from `ltb.spec` (schemas/ keeps a copy
for editors; a test checks that the copy is current)."""

from __future__ import annotations

from typing import Any

from ltb.spec import TopologySpec

SCHEMA_ID = "https://ltb.invalid/schemas/topology-v1.json"


def topology_schema() -> dict[str, Any]:
    schema = TopologySpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = SCHEMA_ID
    # Keys starting with x- are the author's own (YAML anchors), as in ltb.topology.
    schema["patternProperties"] = {"^x-": {}}
    return schema
