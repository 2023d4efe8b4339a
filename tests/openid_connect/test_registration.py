"""Registering apps: `watchword clients create` and ``POST /v1/admin/clients`` take the
same fields and the same checks; client-credentials clients are registered as before."""

from __future__ import annotations

from typing import Any

from tests.conftest import Client
from tests.foundation.test_csrf_admin_audit import admin_and_user
from tests.operators import test_command_line as command_line
from tests.operators.test_command_line import Run, js
from tests.pages.conftest import form_token

run = command_line.run  # the fixture: `watchword ARGS` on a fresh database

APP = {
    "name": "Photos",
    "client_type": "confidential",
    "redirect_uris": ["https://photos.example/callback", "http://127.0.0.1:8123/cb"],
    "grant_types": ["authorization_code", "refresh_token"],
    "first_party": True,
    "backchannel_logout_uri": "https://photos.example/backchannel",
    "post_logout_redirect_uris": ["https://photos.example/"],
}


def test_the_cli_registers_apps_and_refuses_bad_redirect_uris(run: Run) -> None:
    app = js(
        run(
            "clients", "create", "--name", "Photos", "--type", "confidential",
            "--redirect-uri", "https://photos.example/callback",
            "--grant-types", "authorization_code,refresh_token", "--first-party",
            "--backchannel-logout-uri", "https://photos.example/backchannel", "--json",
        )
    )  # fmt: skip
    assert app["client_type"] == "confidential" and app["client_secret"]
    assert app["grant_types"] == ["authorization_code", "refresh_token"]
    assert app["first_party"] is True and app["scopes"] == ["email", "openid", "profile"]
    assert app["backchannel_logout_uri"] == "https://photos.example/backchannel"
    spa = js(
        run("clients", "create", "--name", "SPA", "--type", "public",
            "--redirect-uri", "http://localhost:5173/cb", "--json")
    )  # fmt: skip
    assert spa["client_secret"] is None
    assert spa["grant_types"] == ["authorization_code", "refresh_token"]
    code, _, err = run(
        "clients", "create", "--name", "Bad", "--redirect-uri", "http://photos.example/cb"
    )
    assert code != 0 and "only https" in err
    code, _, err = run(
        "clients", "create", "--name", "Bad", "--type", "public", "--scopes", "profile",
        "--grant-types", "client_credentials",
    )  # fmt: skip
    assert code != 0 and "public client" in err
    machine = js(run("clients", "create", "--name", "reports", "--scopes", "profile", "--json"))
    assert machine["client_secret"] and machine["token_format"] == "jwt"
    listed = js(run("clients", "list", "--json"))
    assert {c["client_type"] for c in listed} == {"confidential", "public"}


async def test_the_admin_api_registers_apps(client: Client) -> None:
    admin, bob, _ = await admin_and_user(client)
    refused = await bob.post("/v1/admin/clients", json=APP)
    assert refused.status_code == 403
    created = await admin.post("/v1/admin/clients", json=APP)
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    assert body["client_secret"]
    assert body["client"]["redirect_uris"] == APP["redirect_uris"]
    assert body["client"]["id_token_signed_response_alg"] == "RS256"
    listed = (await admin.get("/v1/admin/clients")).json()["clients"]
    assert [c["client_id"] for c in listed] == [body["client"]["client_id"]]
    for change, message in [
        ({"redirect_uris": ["https://photos.example/cb#x"]}, "fragment"),
        ({"redirect_uris": ["https://*.photos.example/cb"]}, "wildcard"),
        ({"client_type": "public", "grant_types": ["client_credentials"]}, "public client"),
        ({"redirect_uris": []}, "registers a redirect URI"),
        ({"backchannel_logout_uri": "http://photos.example/bc"}, "only https"),
    ]:
        # A rule across the body's fields: refused by the body's schema, naming the problem.
        bad = await admin.post("/v1/admin/clients", json={**APP, **change})
        assert bad.status_code == 422, (change, bad.text)
        assert bad.json()["error"] == "validation_error"
        assert message in bad.json()["message"], bad.json()
    assert len((await admin.get("/v1/admin/clients")).json()["clients"]) == 1


async def test_the_admin_page_registers_apps(client: Client) -> None:
    admin, bob, _ = await admin_and_user(client)
    page = await admin.get("/admin")
    assert page.status_code == 200 and 'action="/admin/clients"' in page.text
    token = form_token(page.text.split('action="/admin/clients"', 1)[1])
    form = {
        "csrf_token": token,
        "name": "Photos",
        "client_type": "public",
        "redirect_uris": "https://photos.example/callback\nhttp://127.0.0.1:8123/cb",
        "first_party": "on",
    }
    admin.headers.pop("X-CSRF-Token")
    bad = await admin.post("/admin/clients", data={**form, "redirect_uris": "http://x.example/"})
    assert bad.status_code == 400 and "only https" in bad.text
    forged = await admin.post("/admin/clients", data={**form, "csrf_token": "x"})
    assert forged.status_code == 403
    assert (await bob.post("/admin/clients", data=form)).status_code == 403
    done = await admin.post("/admin/clients", data=form)
    assert done.status_code == 201, done.text
    assert "A public app has no secret" in done.text
    (registered,) = await client.container.clients.list_clients()
    assert registered.redirect_uris == (
        "https://photos.example/callback",
        "http://127.0.0.1:8123/cb",
    )
    assert registered.first_party and registered.is_public
