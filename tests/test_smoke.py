from tests.conftest import Client


async def test_register_login_me_logout(client: Client) -> None:
    await client.register()
    await client.login()
    me = await client.get("/v1/me")
    assert me.status_code == 200
    assert me.json()["user"]["email"] == "alice@example.com"
    out = await client.post("/v1/auth/logout")
    assert out.status_code == 200
    assert (await client.get("/v1/me")).status_code == 401
