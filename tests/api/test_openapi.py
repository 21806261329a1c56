"""The committed OpenAPI schema matches the code (regenerate: python -m backend.api.openapi --write)."""

from __future__ import annotations

import json

from backend.api.openapi import REGENERATE, SCHEMA_PATH, build_schema, render


def test_committed_schema_is_current():
    committed = SCHEMA_PATH.read_text(encoding="utf-8")
    assert committed == render(build_schema()), f"{SCHEMA_PATH} is stale; run: {REGENERATE}"


def test_schema_lists_the_contract():
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    for name in ("JobParams", "JobInfo", "Health", "ProgressEvent", "ErrorResponse"):
        assert name in schema["components"]["schemas"]
    body = schema["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert body["schema"]["properties"]["params"] == {"$ref": "#/components/schemas/JobParams"}


def test_served_schema_equals_committed(client):
    assert client.get("/openapi.json").json() == json.loads(SCHEMA_PATH.read_text())
