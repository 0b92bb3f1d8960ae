"""The OpenAPI document and the app's routes describe the same API, with the same roles."""

from __future__ import annotations

import re

from bridge.web import load_openapi
from bridge.web.auth import ROLES, required_role


def app_operations(app) -> dict[tuple[str, str], str]:
    """(path in OpenAPI form, method) -> the role the view declares, for every /api/v1 route."""
    out = {}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/"):
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule[len("/api/v1"):])
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            out[(path, method.lower())] = required_role(app.view_functions[rule.endpoint])
    return out


def documented_operations() -> dict[tuple[str, str], str]:
    doc = load_openapi()
    return {(path, method): spec["x-role"] for path, ops in doc["paths"].items() for method, spec in ops.items()}


def test_every_route_is_documented_and_every_documented_route_exists(site):
    routes, documented = app_operations(site.app), documented_operations()
    assert sorted(set(routes) - set(documented)) == [], "routes missing from openapi.yaml"
    assert sorted(set(documented) - set(routes)) == [], "documented operations the app does not serve"
    assert len(routes) >= 25


def test_documented_roles_match_the_views(site):
    routes, documented = app_operations(site.app), documented_operations()
    mismatched = {op: (routes[op], documented[op]) for op in routes if routes[op] != documented[op]}
    assert mismatched == {}
    assert set(documented.values()) <= set(ROLES)


def test_path_parameters_are_declared():
    doc = load_openapi()
    for path, ops in doc["paths"].items():
        names = set(re.findall(r"{([a-z_]+)}", path))
        for method, spec in ops.items():
            declared = set()
            for param in spec.get("parameters", []):
                if "$ref" in param:
                    param = doc["components"]["parameters"][param["$ref"].rsplit("/", 1)[1]]
                if param["in"] == "path":
                    declared.add(param["name"])
            assert declared == names, (method, path)


def test_the_document_is_served_to_an_authenticated_caller(site):
    served = site.api("viewer").get("/api/v1/openapi.json").get_json()
    assert served["openapi"].startswith("3.") and served["paths"] == load_openapi()["paths"]


def test_the_documented_message_statuses_are_the_store_s():
    """Review of issue 11: a message can now be `resolved` (its dead letters delivered by a replay), but
    the MessageSummary schema still listed only the older statuses, so a client validating answers
    against openapi.yaml rejected a resolved message."""
    from bridge.core.store.base import MESSAGE_STATUSES

    schema = load_openapi()["components"]["schemas"]["MessageSummary"]["properties"]["status"]
    assert sorted(schema["enum"]) == sorted(MESSAGE_STATUSES)
