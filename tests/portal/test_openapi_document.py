"""The OpenAPI document has one component per schema: a schema class used both as a route's
output and nested in another output (UserOut in LoginOut and as /api/users/<id>) is one
component, referenced from both places, not "UserOut" and "UserOut1" (portal.openapi)."""

from __future__ import annotations

import json
import re
import warnings

from openapi_spec_validator import validate

from portal import create_app

REF = re.compile(r'"#/components/schemas/([^"]+)"')


def test_each_schema_is_one_component_that_every_reference_finds():
    app = create_app({"TESTING": True, "SECRET_KEY": "test"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with app.test_request_context():
            document = app._get_spec(force_update=True)
    assert not [str(w.message) for w in caught if "spec" in str(w.message)]
    names = set(document["components"]["schemas"])
    doubled = sorted(
        n for n in names if re.fullmatch(r"(.+?)\d+", n) and n.rstrip("0123456789") in names
    )
    assert not doubled, f"schemas registered twice: {doubled}"
    text = json.dumps(document)
    assert set(REF.findall(text)) <= names
    # Both uses of UserOut point at the one component.
    paths = document["paths"]
    login = document["components"]["schemas"]["LoginOut"]["properties"]["user"]
    me = paths["/api/auth/me"]["get"]["responses"]["200"]["content"]["application/json"]
    assert "UserOut" in json.dumps(login) and me["schema"] == {
        "$ref": "#/components/schemas/UserOut"
    }
    validate(document)
