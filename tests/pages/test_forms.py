"""The pages over HTTP: every form's CSRF refusal, redirects, escaping, headers, messages."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from tests.conftest import BASE_URL, Client, ClientFactory
from tests.helpers import PASSWORD
from tests.pages.conftest import CLI, form_token, make_admin, page_login, signed_in_page
from watchword.domain.errors import StoreUnavailable
from watchword.web.pages.signin import safe_next

HOSTILE = "<img src=x onerror=alert(1)>"
ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"


def assert_csp(response: httpx.Response) -> None:
    policy = response.headers.get("content-security-policy", "")
    assert "default-src 'self'" in policy, response.request.url
    assert "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy


async def new_client(client_factory: ClientFactory, **overrides: Any) -> Client:
    client = await client_factory(**overrides)
    await client.register()
    return client


# -- start page and sign-in -------------------------------------------------------------


async def test_start_page_sends_visitors_to_sign_in_and_members_to_their_account(
    client: Client,
) -> None:
    assert (await client.get("/")).headers["location"] == "/login"
    await client.register()
    assert (await page_login(client)).status_code == 303
    assert (await client.get("/")).headers["location"] == "/account"


async def test_sign_in_starts_a_cookie_session_and_goes_to_the_account(client: Client) -> None:
    await client.register()
    response = await page_login(client)
    assert response.status_code == 303 and response.headers["location"] == "/account"
    assert "watchword_session" in response.cookies
    page = await client.get("/account")
    assert page.status_code == 200 and "alice@example.com" in page.text
    assert_csp(page)


async def test_sign_in_without_the_form_token_is_refused_and_signs_nobody_in(
    client: Client,
) -> None:
    user = await client.register()
    await client.get("/login")  # the pre-session cookie is there; the field is not
    for data in (
        {"email": "alice@example.com", "password": PASSWORD},
        {"email": "alice@example.com", "password": PASSWORD, "csrf_token": "forged"},
    ):
        response = await client.post("/login", data=data)
        assert response.status_code == 403, response.text
        assert_csp(response)
        assert "watchword_session" not in response.cookies
    assert await client.container.sessions.list_live(user["id"]) == []


async def test_sign_in_from_another_origin_is_refused(client: Client) -> None:
    await client.register()
    page = await client.get("/login")
    response = await client.post(
        "/login",
        data={
            "csrf_token": form_token(page.text),
            "email": "alice@example.com",
            "password": PASSWORD,
        },
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403


@pytest.mark.parametrize(
    "target",
    [
        "//evil.com",
        "/\\evil.com",
        "https://evil.com",
        "javascript:alert(1)",
        "http:/evil.com",
        "/\tevil",
        "",
        "evil.com",
        "///evil.com",
    ],
)
async def test_sign_in_never_redirects_off_site(client: Client, target: str) -> None:
    await client.register()
    response = await page_login(client, next=target)
    assert response.status_code == 303
    assert response.headers["location"] == "/account"


async def test_sign_in_goes_on_to_a_local_next(client: Client) -> None:
    await client.register()
    local = "/v1/oauth2/authorize?client_id=abc&redirect_uri=https%3A%2F%2Fapp&state=x"
    login = await client.get("/login", params={"next": local})
    assert 'name="next" value="/v1/oauth2/authorize?client_id=abc&amp;' in login.text
    response = await client.post(
        "/login",
        data={
            "csrf_token": form_token(login.text),
            "email": "alice@example.com",
            "password": PASSWORD,
            "next": local,
        },
    )
    assert response.status_code == 303 and response.headers["location"] == local
    # Already signed in: the sign-in page goes straight on.
    again = await client.get("/login", params={"next": local})
    assert again.status_code == 303 and again.headers["location"] == local
    offsite = await client.get("/login", params={"next": "//evil.com"})
    assert offsite.headers["location"] == "/account"


def test_safe_next_accepts_paths_only() -> None:
    assert safe_next("/account?x=1#y") == "/account?x=1#y"
    for bad in ("//a", "/\\a", "https://a", "javascript:x", "/a\nb", "a", None, "/" + "a" * 5000):
        assert safe_next(bad) == "/account"


async def test_wrong_password_and_unknown_email_get_the_same_message(client: Client) -> None:
    await client.register()
    wrong = await page_login(client, password="not the password")
    unknown = await page_login(client, email="nobody@example.com")
    assert wrong.status_code == unknown.status_code == 401
    assert "The email or password is incorrect." in wrong.text
    assert "The email or password is incorrect." in unknown.text
    assert 'value="alice@example.com"' in wrong.text  # the email is kept, the password not
    assert PASSWORD not in wrong.text


async def test_throttled_sign_in_says_how_long_to_wait(client_factory: ClientFactory) -> None:
    client = await new_client(client_factory, login_rate_limit_account="2/minute")
    for _ in range(2):
        assert (await page_login(client, password="wrong password")).status_code == 401
    response = await page_login(client)
    assert response.status_code == 429
    assert "Too many sign-in attempts. Try again in" in response.text
    assert int(response.headers["retry-after"]) >= 1


async def test_disabled_account_is_told_so(client: Client) -> None:
    user = await client.register()
    await client.container.accounts.set_disabled(user["id"], True, CLI, actor_id=None)
    response = await page_login(client)
    assert response.status_code == 403 and "This account is disabled." in response.text


async def test_a_store_that_is_down_gives_a_friendly_503_page(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    await client.register()

    async def down(**_: Any) -> Any:
        raise StoreUnavailable()

    monkeypatch.setattr(client.container.accounts, "login", down)
    response = await page_login(client)
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("text/html")
    assert "Temporarily unavailable" in response.text and "try again" in response.text
    assert_csp(response)


# -- sign-up ----------------------------------------------------------------------------


async def test_sign_up_shows_and_enforces_the_password_policy(client: Client) -> None:
    page = await client.get("/signup")
    assert page.status_code == 200 and "At least 8 characters" in page.text
    assert_csp(page)
    token = form_token(page.text)
    short = await client.post(
        "/signup",
        data={
            "csrf_token": token,
            "email": "new@example.com",
            "password": "short",
            "password_again": "short",
        },
    )
    assert short.status_code == 400 and "at least 8 characters" in short.text
    with pytest.raises(Exception, match="No user"):
        await client.container.accounts.find_user("new@example.com")
    made = await client.post(
        "/signup",
        data={
            "csrf_token": token,
            "email": "new@example.com",
            "password": PASSWORD,
            "password_again": PASSWORD,
        },
    )
    assert made.status_code == 303 and made.headers["location"] == "/account"
    assert (await client.get("/account")).status_code == 200


async def test_sign_up_without_the_form_token_creates_nobody(client: Client) -> None:
    await client.get("/signup")
    response = await client.post(
        "/signup",
        data={"email": "new@example.com", "password": PASSWORD, "password_again": PASSWORD},
    )
    assert response.status_code == 403
    assert await client.container.accounts.list_users(limit=10, offset=0) == []


async def test_sign_up_is_absent_when_registration_is_closed(
    client_factory: ClientFactory,
) -> None:
    client = await client_factory(open_registration=False)
    assert (await client.get("/signup")).status_code == 404
    assert "/signup" not in (await client.get("/login")).text


# -- the account page's forms -----------------------------------------------------------

Form = tuple[str, dict[str, str]]


async def account_forms(client: Client) -> tuple[dict[str, Form], Callable[[], Awaitable[Any]]]:
    """Every form of the account page (on a second device and a key), and a snapshot."""
    user = await client.register()
    other = httpx.AsyncClient(transport=client._transport, base_url=BASE_URL)
    await page_login(other, device_name="phone")
    await other.aclose()
    await page_login(client)
    container = client.container
    created = await container.api_keys.create(
        await container.accounts.get_user(user["id"]),
        name="ci",
        scopes=["profile"],
        grantable=frozenset({"profile"}),
        expires_in=None,
        ctx=CLI,
        actor_id=user["id"],
    )
    live = await container.sessions.list_live(user["id"])
    phone = next(s for s, _ in live if s.device_name == "phone")
    forms: dict[str, Form] = {
        "logout": ("/logout", {}),
        "password": (
            "/account/password",
            {
                "current_password": PASSWORD,
                "new_password": "a new password!",
                "new_password_again": "a new password!",
            },
        ),
        "revoke one": (f"/account/sessions/{phone.id}/revoke", {}),
        "revoke others": ("/account/sessions/revoke-others", {}),
        "revoke all": ("/account/sessions/revoke-all", {}),
        "create key": ("/account/api-keys", {"name": "new", "scopes": "profile", "expires": "7d"}),
        "revoke key": (f"/account/api-keys/{created.key.id}/revoke", {}),
    }

    async def snapshot() -> Any:
        user_now = await container.accounts.get_user(user["id"])
        sessions = sorted(s.id for s, _ in await container.sessions.list_live(user["id"]))
        keys = sorted(
            (k.id, k.revoked_at) for k, _ in await container.api_keys.list_for_user(user["id"])
        )
        return user_now.password_hash, sessions, keys

    return forms, snapshot


async def test_every_account_form_refuses_a_missing_or_wrong_token_and_changes_nothing(
    client: Client,
) -> None:
    forms, snapshot = await account_forms(client)
    before = await snapshot()
    for name, (path, data) in forms.items():
        for token in (None, "wrong-token"):
            body = dict(data) if token is None else {**data, "csrf_token": token}
            response = await client.post(path, data=body)
            assert response.status_code == 403, (name, token, response.text)
            assert_csp(response)
            assert "CSRF" in response.text or "X-CSRF-Token" in response.text
    assert await snapshot() == before


async def test_every_account_form_works_with_its_token(client: Client) -> None:
    forms, _ = await account_forms(client)
    expected = {
        "revoke one": "/account#devices",
        "revoke others": "/account#devices",
        "revoke key": "/account#api-keys",
        "password": "/account?done=password#password",
    }
    for name in ("revoke one", "revoke others", "revoke key", "password"):
        path, data = forms[name]
        _, token = await signed_in_page(client)
        response = await client.post(path, data={**data, "csrf_token": token})
        assert response.status_code == 303, (name, response.text)
        assert response.headers["location"] == expected[name]
    _, token = await signed_in_page(client)
    path, data = forms["create key"]
    created = await client.post(path, data={**data, "csrf_token": token})
    assert created.status_code == 201 and "ww_live_" in created.text
    assert "it will not be shown again" in created.text
    assert created.headers["cache-control"] == "no-store"
    secret = created.text.split('<code id="new-key">')[1].split("<")[0]
    assert secret not in (await client.get("/account")).text
    _, token = await signed_in_page(client)
    path, data = forms["revoke all"]
    everywhere = await client.post(path, data={"csrf_token": token})
    assert everywhere.status_code == 303 and everywhere.headers["location"] == "/login"
    assert (await client.get("/account")).status_code == 303


async def test_sign_out_is_a_post_that_ends_the_session(client: Client) -> None:
    user = await client.register()
    await page_login(client)
    _, token = await signed_in_page(client)
    assert (await client.get("/logout")).status_code == 405
    response = await client.post("/logout", data={"csrf_token": token})
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert await client.container.sessions.list_live(user["id"]) == []


async def test_password_change_asks_for_the_current_password(client: Client) -> None:
    await client.register()
    await page_login(client)
    _, token = await signed_in_page(client)
    response = await client.post(
        "/account/password",
        data={
            "csrf_token": token,
            "current_password": "not it at all",
            "new_password": "a new password!",
            "new_password_again": "a new password!",
        },
    )
    assert response.status_code == 400 and "The current password is incorrect." in response.text


async def test_user_controlled_strings_render_as_text(client: Client) -> None:
    user = await client.register()
    await page_login(client, device_name=HOSTILE)
    container = client.container
    await container.api_keys.create(
        await container.accounts.get_user(user["id"]),
        name=HOSTILE,
        scopes=["profile"],
        grantable=frozenset({"profile"}),
        expires_in=None,
        ctx=CLI,
        actor_id=user["id"],
    )
    hostile_agent = httpx.AsyncClient(
        transport=client._transport, base_url=BASE_URL, headers={"User-Agent": HOSTILE}
    )
    await page_login(hostile_agent)
    await hostile_agent.aclose()
    for path in ("/account", "/account/devices"):
        page = await client.get(path)
        assert page.status_code == 200
        assert HOSTILE not in page.text
        assert ESCAPED in page.text
    # The admin sees the same strings in the user's page and the audit trail.
    await make_admin(client)
    admin = httpx.AsyncClient(transport=client._transport, base_url=BASE_URL)
    await page_login(admin, email="root@example.com")
    for path in (f"/admin/users/{user['id']}", "/admin/audit", "/admin?q=alice"):
        page = await admin.get(path)
        assert page.status_code == 200, path
        assert HOSTILE not in page.text, path
    await admin.aclose()


async def test_hostile_next_is_escaped_on_the_login_page(client: Client) -> None:
    page = await client.get("/login", params={"next": '/x"><script>alert(1)</script>'})
    assert "<script>alert(1)" not in page.text
    assert "&lt;script&gt;" in page.text or "&#34;" in page.text


# -- admin ---------------------------------------------------------------------------------


async def admin_forms(client: Client) -> tuple[dict[str, Form], Callable[[], Awaitable[Any]], str]:
    bob = await client.register("bob@example.com")
    other = httpx.AsyncClient(transport=client._transport, base_url=BASE_URL)
    await page_login(other, email="bob@example.com")
    await other.aclose()
    await make_admin(client)
    await page_login(client, email="root@example.com")
    user_id = bob["id"]
    forms: dict[str, Form] = {
        "roles": (f"/admin/users/{user_id}/roles", {"roles": "admin"}),
        "disable": (f"/admin/users/{user_id}/disable", {}),
        "enable": (f"/admin/users/{user_id}/enable", {}),
        "sign out": (f"/admin/users/{user_id}/sessions/revoke", {}),
    }
    container = client.container

    async def snapshot() -> Any:
        user = await container.accounts.get_user(user_id)
        return user.roles, user.disabled, len(await container.sessions.list_live(user_id))

    return forms, snapshot, user_id


async def test_every_admin_form_refuses_a_missing_or_wrong_token_and_changes_nothing(
    client: Client,
) -> None:
    forms, snapshot, _ = await admin_forms(client)
    before = await snapshot()
    for name, (path, data) in forms.items():
        for body in (dict(data), {**data, "csrf_token": "wrong"}):
            response = await client.post(path, data=body)
            assert response.status_code == 403, (name, response.text)
            assert_csp(response)
    assert await snapshot() == before


async def test_admin_forms_work_with_their_token(client: Client) -> None:
    forms, snapshot, user_id = await admin_forms(client)
    _, token = await signed_in_page(client, f"/admin/users/{user_id}")
    for name in ("roles", "sign out", "disable"):
        path, data = forms[name]
        response = await client.post(path, data={**data, "csrf_token": token})
        assert response.status_code == 303, (name, response.text)
    roles, disabled, sessions = await snapshot()
    assert "admin" in roles and disabled and sessions == 0
    path, _ = forms["enable"]
    assert (await client.post(path, data={"csrf_token": token})).status_code == 303
    assert (await snapshot())[1] is False


async def test_admin_pages_need_the_admin_scope(client: Client) -> None:
    await client.register()
    anonymous = await client.get("/admin")
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/login?next=%2Fadmin"
    await page_login(client)
    for path in ("/admin", "/admin/audit", "/admin/online", "/admin/users/x"):
        response = await client.get(path)
        assert response.status_code == 403, path
        assert_csp(response)
    assert "/admin" not in (await client.get("/account")).text.split("<main")[0]


async def test_admin_pages_list_search_and_filter(client: Client) -> None:
    bob = await client.register("bob@example.com")
    await page_login(client, email="bob@example.com", password="wrong password")
    await make_admin(client)
    await page_login(client, email="root@example.com")
    console = await client.get("/admin")
    assert console.status_code == 200 and "bob@example.com" in console.text
    assert_csp(console)
    found = await client.get("/admin", params={"q": "BOB"})
    assert (
        "bob@example.com" in found.text and "root@example.com" not in found.text.split("Users")[-1]
    )
    audit = await client.get(
        "/admin/audit", params={"user": "bob@example.com", "event": "login.failed"}
    )
    assert audit.status_code == 200 and "login.failed" in audit.text
    assert "user.registered" not in audit.text
    future = await client.get("/admin/audit", params={"since": "2999-01-01"})
    assert "No events match." in future.text
    bad = await client.get("/admin/audit", params={"since": "yesterday"})
    assert bad.status_code == 400 and "2026-01-31" in bad.text
    user_page = await client.get(f"/admin/users/{bob['id']}")
    assert user_page.status_code == 200 and "Disable account" in user_page.text
    assert (await client.get("/admin/users/nope")).status_code == 404


# -- every page: headers, title, switch ---------------------------------------------------


async def test_every_page_carries_the_content_security_policy(client: Client) -> None:
    bob = await client.register("bob@example.com")
    for path in ("/login", "/signup", "/nope-login"):
        response = await client.get(path)
        if response.status_code != 404:
            assert_csp(response)
    await make_admin(client)
    await page_login(client, email="root@example.com")
    for path in (
        "/account",
        "/account/devices",
        "/admin",
        "/admin/online",
        "/admin/audit",
        f"/admin/users/{bob['id']}",
    ):
        response = await client.get(path)
        assert response.status_code == 200, path
        assert_csp(response)
        assert "<script>" not in response.text and " style=" not in response.text
        assert " on" + "click=" not in response.text


async def test_the_title_names_the_product(client_factory: ClientFactory) -> None:
    client = await client_factory(ui_title="Acme <ID>")
    page = await client.get("/login")
    assert "Sign in to Acme &lt;ID&gt;" in page.text


async def test_pages_can_be_turned_off(client_factory: ClientFactory) -> None:
    client = await client_factory(ui=False)
    response = await client.get("/")
    assert response.status_code == 404 and response.json()["error"] == "not_found"
    assert (await client.get("/login")).status_code == 404
    assert (await client.get("/assets/app.css")).status_code == 404


async def test_assets_are_served_from_the_package(client: Client) -> None:
    for name, kind in (
        ("app.css", "text/css"),
        ("account.js", "javascript"),
        ("live.js", "javascript"),
    ):
        response = await client.get(f"/assets/{name}")
        assert response.status_code == 200 and kind in response.headers["content-type"]
