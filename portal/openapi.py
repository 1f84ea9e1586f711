"""The portal's APIFlask application class: one OpenAPI component per output schema.

APIFlask 3.1 registers a route's input and output schemas itself (walking the routes
shortest first) and remembers only the classes it registered; apispec's marshmallow plugin
registers a schema met as a Nested field of another one on its own. So a class used both
ways, e.g. UserOut in LoginOut.user (/api/auth/login) and as the output of /api/users/<id>,
was registered twice, the second time as "UserOut1" (with apispec's warning that references
may not resolve). Here a schema the plugin already holds, with the same modifiers, is reused
under the name it has.
"""

from __future__ import annotations

from typing import Any

from apiflask import APIFlask
from apispec.ext.marshmallow.common import make_schema_key
from marshmallow import Schema


class PortalAPI(APIFlask):
    def _register_schema_and_get_ref(
        self, spec: Any, registered_schema_classes: dict[int, str], schema_obj: Any
    ) -> dict[str, str]:
        plugin = getattr(self, "_ma_plugin", None)
        if plugin is not None and isinstance(schema_obj, Schema):
            name = plugin.converter.refs.get(make_schema_key(schema_obj))
            if name is not None:
                return {"$ref": f"#/components/schemas/{name}"}
        return super()._register_schema_and_get_ref(spec, registered_schema_classes, schema_obj)
