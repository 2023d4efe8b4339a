"""Bad input over HTTP: a clear 4xx JSON error, never a 500, never a partial write."""

from __future__ import annotations

import json
import random
import string
from collections.abc import AsyncIterator

import pytest

from tests.conftest import Client, ClientFactory
from tests.helpers import PASSWORD
from watchword.services.context import CLI


def assert_error(response: object, status: int, code: str) -> None:
    assert getattr(response, "status_code") == status, getattr(response, "text")  # noqa: B009
    body = response.json()  # type: ignore[attr-defined]
    assert body["error"] == code and isinstance(body["message"], str) and body["message"]
    assert set(body) == {"error", "message"}


async def test_malformed_json_is_400(client: Client) -> None:
    for raw in (b"{", b"{'email': 1}", b"\xff\xfe", b'{"email": "a@b.c",}'):
        response = await client.post(
            "/v1/users", content=raw, headers={"Content-Type": "application/json"}
        )
        assert_error(response, 400, "invalid_json")
    assert await client.container.db.users.count() == 0


async def test_wrong_types_and_missing_fields_are_422(client: Client) -> None:
    for body in (
        {"email": 5, "password": PASSWORD},
        {"email": "a@example.com", "password": ["x"]},
        {"email": "a@example.com"},
        [],
        "just a string",
        None,
    ):
        response = await client.post("/v1/users", json=body)
        assert_error(response, 422, "validation_error")
    assert await client.container.db.users.count() == 0


async def test_unknown_fields_are_422(client: Client) -> None:
    response = await client.post(
        "/v1/users", json={"email": "a@example.com", "password": PASSWORD, "roles": ["admin"]}
    )
    assert_error(response, 422, "validation_error")
    assert "roles" in response.json()["message"]
    assert await client.container.db.users.count() == 0


async def test_a_body_over_the_limit_is_413_by_content_length(
    client_factory: ClientFactory,
) -> None:
    client = await client_factory(max_body_bytes=2048)
    body = json.dumps({"email": "a@example.com", "password": "x" * 4000}).encode()
    response = await client.post(
        "/v1/users", content=body, headers={"Content-Type": "application/json"}
    )
    assert_error(response, 413, "payload_too_large")
    assert "2048" in response.json()["message"]
    assert await client.container.db.users.count() == 0
    bogus = await client.post(
        "/v1/users",
        content=b"{}",
        headers={"Content-Type": "application/json", "Content-Length": "abc"},
    )
    assert bogus.status_code in (400, 413)


async def test_a_chunked_body_over_the_limit_is_413(client_factory: ClientFactory) -> None:
    client = await client_factory(max_body_bytes=2048)

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"email": "a@example.com", "password": "'
        for _ in range(10):
            yield b"x" * 512
        yield b'"}'

    response = await client.post(
        "/v1/users", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "payload_too_large")
    assert await client.container.db.users.count() == 0


async def test_a_chunked_body_under_the_limit_is_fine(client_factory: ClientFactory) -> None:
    client = await client_factory(max_body_bytes=2048)

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"email": "a@example.com", '
        yield b'"password": "' + PASSWORD.encode() + b'"}'

    response = await client.post(
        "/v1/users", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("cookie", "code"),
    [
        ("x" * 129, "invalid_session"),  # overlong
        ("not-a-session", "invalid_session"),  # forged
        ("A" * 43, "invalid_session"),  # the right shape, unknown
        ("%E2%9C%93%00", "invalid_session"),
        ('"quoted value"', "invalid_session"),
    ],
)
async def test_bad_cookies_are_401_with_a_clear_code(
    client: Client, cookie: str, code: str
) -> None:
    await client.register()
    response = await client.get("/v1/me", headers={"Cookie": f"watchword_session={cookie}"})
    assert_error(response, 401, code)
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    sessions = await client.container.db.sessions.list_live(
        (await client.container.accounts.find_user("alice@example.com")).id,
        client.container.clock.now(),
    )
    assert sessions == []


async def test_a_bad_cookie_does_not_block_sign_in_or_public_routes(client: Client) -> None:
    await client.register()
    client.cookies.set("watchword_session", "stale-or-forged")
    assert (await client.get("/healthz")).status_code == 200
    await client.login()
    assert (await client.get("/v1/me")).status_code == 200


async def test_unknown_routes_and_methods_are_json(client: Client) -> None:
    assert_error(await client.get("/v1/nowhere"), 404, "not_found")
    assert_error(await client.put("/v1/me"), 405, "method_not_allowed")


async def test_error_responses_are_not_cached(client: Client) -> None:
    response = await client.get("/v1/me")
    assert response.headers["cache-control"] == "no-store"


# -- fuzzing ----------------------------------------------------------------------------------

ROUTES = [
    ("POST", "/v1/users"),
    ("POST", "/v1/auth/login"),
    ("POST", "/v1/auth/logout"),
    ("GET", "/v1/me"),
    ("POST", "/v1/me/password"),
    ("GET", "/v1/me/events"),
    ("GET", "/v1/sessions"),
    ("DELETE", "/v1/sessions/{id}"),
    ("POST", "/v1/sessions/revoke-others"),
    ("GET", "/v1/admin/users"),
    ("PATCH", "/v1/admin/users/{id}"),
    ("DELETE", "/v1/admin/users/{id}/sessions"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
]
FIELDS = [
    "email",
    "password",
    "first_name",
    "last_name",
    "device_name",
    "current_password",
    "new_password",
    "disabled",
    "roles",
    "limit",
]


def random_text(rng: random.Random, longest: int = 40) -> str:
    alphabet = string.printable + "\u00e9\u2603\U0001f600\x00\x7f\u202e"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, longest)))


def random_value(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randint(0, 8 if depth < 2 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 2**63, 1.5, float("1e308"), rng.randint(-1000, 1000)])
    if kind in (3, 4, 5):
        return random_text(rng, rng.choice([10, 100, 5000]))
    if kind in (6, 7):
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(FIELDS): random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def random_body(rng: random.Random) -> tuple[bytes, str]:
    choice = rng.randint(0, 5)
    if choice == 0:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 200))), "application/json"
    if choice == 1:
        return random_text(rng, 200).encode("utf-8", "surrogatepass"), rng.choice(
            ["application/json", "text/plain", "application/x-www-form-urlencoded", ""]
        )
    body = {f: random_value(rng) for f in rng.sample(FIELDS, rng.randint(0, 5))}
    if rng.random() < 0.3:
        body["email"] = rng.choice(["alice@example.com", " ALICE@example.com", "x@y"])
    return json.dumps(body).encode(), "application/json"


def random_headers(rng: random.Random, csrf: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    cookie = rng.choice(
        [
            None,
            "",
            random_text(rng, 60),
            "A" * rng.choice([42, 43, 44, 128, 129, 4000]),
            "%00%ff",
        ]
    )
    if cookie is not None:
        safe = "".join(c for c in cookie if 32 < ord(c) < 127 and c not in ';,"\\')
        headers["Cookie"] = f"watchword_session={safe}"
    if rng.random() < 0.5:
        headers["X-CSRF-Token"] = rng.choice([csrf, random_text(rng, 60).encode().hex(), ""])
    if rng.random() < 0.3:
        headers["Origin"] = rng.choice(["null", "https://evil.example", "http://127.0.0.1:8000"])
    if rng.random() < 0.3:
        headers["User-Agent"] = random_text(rng, 600).encode("ascii", "ignore").decode()
    if rng.random() < 0.2:
        headers["X-Forwarded-For"] = random_text(rng, 80).encode("ascii", "ignore").decode()
    if rng.random() < 0.1:
        headers["Content-Length"] = rng.choice(["-1", "abc", "99999999999999999999"])
    return headers


AUTHENTICATED = {
    ("POST", "/v1/auth/logout"),
    ("GET", "/v1/me"),
    ("POST", "/v1/me/password"),
    ("GET", "/v1/me/events"),
    ("GET", "/v1/sessions"),
    ("DELETE", "/v1/sessions/{id}"),
    ("POST", "/v1/sessions/revoke-others"),
    ("GET", "/v1/admin/users"),
    ("PATCH", "/v1/admin/users/{id}"),
    ("DELETE", "/v1/admin/users/{id}/sessions"),
}
OTHER_PASSWORD = "another horse battery staple"


class Fuzzer:
    """Alice (an admin) signs in afresh for each credentialed request, so a request that
    ends her session (logout, password change, revocations) leaves the next one a live one."""

    def __init__(self, client: Client, bob_id: str) -> None:
        self.client = client
        self.bob_id = bob_id
        self.password = PASSWORD

    @property
    def next(self) -> str:
        return OTHER_PASSWORD if self.password == PASSWORD else PASSWORD

    async def sign_in(self) -> tuple[str, str]:
        response = await self.client.post(
            "/v1/auth/login",
            json={"email": "alice@example.com", "password": self.password, "mode": "token"},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        me = await self.client.get(
            "/v1/me", headers={"Authorization": f"Bearer {body['access_token']}"}
        )
        return body["access_token"], me.json()["authentication"]["session_id"]

    async def well_formed(self, method: str, template: str) -> tuple[str, object | None]:
        """A path and body the route accepts from Alice."""
        if template == "/v1/sessions/{id}":
            return template.replace("{id}", (await self.sign_in())[1]), None
        if template.startswith("/v1/admin/users/{id}"):
            body = {"roles": ["user"]} if method == "PATCH" else None
            return template.replace("{id}", self.bob_id), body
        if template == "/v1/me/password":
            return template, {"current_password": self.password, "new_password": self.next}
        return template, None


async def test_fuzzed_requests_never_get_a_500(client_factory: ClientFactory) -> None:
    client = await client_factory(
        trust_forwarded_for=True,
        login_rate_limit_ip="100000/minute",
        login_rate_limit_account="100000/minute",
    )
    user = await client.register()
    await client.container.accounts.set_roles(user["id"], ["user", "admin"], CLI, actor_id=None)
    bob = await client.register("bob@example.com")
    csrf = (await client.login()).json()["csrf_token"]
    session_id = (await client.get("/v1/me")).json()["session"]["id"]
    ids = [user["id"], session_id, "x" * 70, "../../etc", "%00", "00000000-0000-0000-0000-0"]
    fuzzer = Fuzzer(client, bob["id"])
    rng = random.Random(20260101)
    statuses: dict[int, int] = {}
    reached: set[tuple[str, str]] = set()
    client.cookies.clear()
    for n in range(600):
        method, template = rng.choice(ROUTES)
        path = template.replace("{id}", rng.choice(ids))
        body, content_type = random_body(rng)
        headers = random_headers(rng, csrf)
        credentialed = (method, template) in AUTHENTICATED and rng.random() < 0.5
        if credentialed:
            # Half the requests carry a valid credential, half of those a well-formed body.
            token, _ = await fuzzer.sign_in()
            headers["Authorization"] = f"Bearer {token}"
            if template.startswith("/v1/admin/users/{id}"):
                # Alice may do anything to Bob, but must not disable herself mid-run.
                path = template.replace("{id}", rng.choice([bob["id"], *ids[1:]]))
            if rng.random() < 0.5:
                path, payload = await fuzzer.well_formed(method, template)
                body, content_type = json.dumps(payload).encode(), "application/json"
                headers.pop("Content-Length", None)
        if content_type:
            headers["Content-Type"] = content_type
        params = {"limit": str(random_value(rng)), "before": random_text(rng, 5)}
        response = await client.request(
            method,
            path,
            content=body if method != "GET" else None,
            headers=headers,
            params=params if rng.random() < 0.3 else None,
        )
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, (n, method, path, headers, body[:200], response.text)
        if response.status_code >= 400 and path != "/metrics":
            assert set(response.json()) >= {"error", "message"}
        if credentialed and response.status_code < 300:
            reached.add((method, template))
            if template == "/v1/me/password":
                fuzzer.password = fuzzer.next
    # The fuzzer reached the handlers: every authenticated route answered 2xx at least once.
    assert reached == AUTHENTICATED, sorted(AUTHENTICATED - reached)
    assert await client.container.db.users.count() <= 3
