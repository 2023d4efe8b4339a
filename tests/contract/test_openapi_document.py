"""The served OpenAPI document against what the handlers really do."""

from __future__ import annotations

from typing import Any

from tests.conftest import Client
from tests.foundation.test_csrf_admin_audit import admin_and_user
from watchword.web.openapi import BEARER_OAUTH2_PATHS


async def document(client: Client) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def test_a_huge_offset_is_refused_by_the_schema_not_a_500(client: Client) -> None:
    admin, _, _ = await admin_and_user(client)
    response = await admin.get("/v1/admin/users", params={"offset": "9223372036854775808"})
    assert response.status_code == 422, response.text
    declared = (await document(client))["paths"]["/v1/admin/users"]["get"]["parameters"]
    offset = next(p for p in declared if p["name"] == "offset")
    assert offset["schema"]["maximum"] < 2**63


async def test_declared_statuses_and_media_types(client: Client) -> None:
    paths = (await document(client))["paths"]
    assert "201" in paths["/v1/realtime/ticket"]["post"]["responses"]
    jwks = paths["/.well-known/jwks.json"]["get"]["responses"]["200"]["content"]
    assert list(jwks) == ["application/jwk-set+json"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "422" not in responses or "$ref" in str(responses["422"]), (method, path)
            if path.startswith("/oauth2/") and path not in BEARER_OAUTH2_PATHS:
                assert "application/x-www-form-urlencoded" in operation["requestBody"]["content"]
                assert responses["400"]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/OAuthError"
                }
    me = paths["/v1/me"]["get"]["responses"]
    assert {"401", "403", "503"} <= set(me)
    assert "HTTPValidationError" not in str(paths)


async def test_links_name_operations_the_document_has(client: Client) -> None:
    paths = (await document(client))["paths"]
    operation_ids = {op["operationId"] for ops in paths.values() for op in ops.values()}
    created = paths["/v1/api-keys"]["post"]["responses"]["201"]["links"]["RevokeCreatedApiKey"]
    assert created["parameters"] == {"key_id": "$response.body#/api_key/id"}
    assert created["operationId"] == paths["/v1/api-keys/{key_id}"]["delete"]["operationId"]
    links = [
        link
        for ops in paths.values()
        for op in ops.values()
        for response in op["responses"].values()
        for link in response.get("links", {}).values()
    ]
    assert len(links) >= 7
    assert all(link["operationId"] in operation_ids for link in links)


async def test_a_key_name_or_scope_the_schema_forbids_is_a_validation_error(
    client: Client,
) -> None:
    admin, _, _ = await admin_and_user(client)
    for body in (
        {"name": "\U000e08d2 unassigned", "scopes": ["profile"]},
        {"name": "   ", "scopes": ["profile"]},
        {"name": "ok", "scopes": ["", "profile"]},
        {"name": "ok", "scopes": []},
        {"name": "ok", "scopes": "   "},
    ):
        for path in ("/v1/api-keys", "/v1/signing-keys"):
            response = await admin.post(path, json=body)
            assert response.status_code == 422, (path, body, response.text)
            assert response.json()["error"] == "validation_error"
    listed = await admin.get("/v1/api-keys")
    assert listed.json()["api_keys"] == []
