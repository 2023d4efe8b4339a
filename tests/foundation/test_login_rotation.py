"""Signing in again from the same browser ends the browser's previous session."""

from tests.conftest import Client


async def test_a_new_sign_in_revokes_the_session_the_browser_still_held(client: Client) -> None:
    await client.register()
    first = (await client.login()).json()["session"]["id"]
    second = (await client.login()).json()["session"]["id"]
    assert first != second
    live = (await client.get("/v1/sessions")).json()["sessions"]
    assert [s["id"] for s in live] == [second]
    events = (await client.get("/v1/me/events")).json()["events"]
    replaced = [e for e in events if e["session_id"] == first and e["type"] == "session.revoked"]
    assert replaced and replaced[0]["details"]["reason"] == "replaced_by_sign_in"


async def test_a_sign_in_with_a_stale_cookie_still_works(client: Client) -> None:
    await client.register()
    await client.login()
    assert (await client.post("/v1/auth/logout")).status_code == 200
    client.cookies.set("watchword_session", "forged-or-stale-value")
    response = await client.post(
        "/v1/auth/login",
        json={"email": "alice@example.com", "password": "correct horse battery staple"},
    )
    assert response.status_code == 200


async def test_another_browser_keeps_its_session(client: Client, client_factory: object) -> None:
    await client.register()
    first = (await client.login()).json()["session"]["id"]
    other_browser = Client(transport=client._transport, base_url=str(client.base_url))
    try:
        await other_browser.login()
    finally:
        await other_browser.aclose()
    live = {s["id"] for s in (await client.get("/v1/sessions")).json()["sessions"]}
    assert first in live and len(live) == 2
