"""The authenticator chain: the first principal wins, and an authenticator whose credential
headers are absent is not asked at all."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from watchword.domain.principal import ANONYMOUS, AuthMethod, Principal
from watchword.web.authn import AuthChain


class Recording:
    def __init__(self, name: str, headers: frozenset[bytes] | None, answers: bool) -> None:
        self.name = name
        self.answers = answers
        self.asked: list[str] = []
        if headers is not None:
            self.headers = headers

    async def authenticate(self, conn: HTTPConnection) -> Principal | None:
        self.asked.append(conn.scope["path"])
        if not self.answers:
            return None
        return Principal(kind="user", method=AuthMethod.COOKIE, user_id=self.name)


def connection(*headers: tuple[bytes, bytes]) -> HTTPConnection:
    return HTTPConnection({"type": "http", "path": "/v1/me", "headers": list(headers)})


async def test_an_authenticator_runs_only_when_one_of_its_headers_is_present() -> None:
    bearer = Recording("bearer", frozenset({b"authorization"}), answers=False)
    key = Recording("key", frozenset({b"authorization", b"x-api-key"}), answers=False)
    cookie = Recording("cookie", frozenset({b"cookie"}), answers=True)
    chain = AuthChain([bearer, key, cookie])

    principal = await chain.authenticate(connection((b"cookie", b"s=1")))
    assert principal.user_id == "cookie"
    assert bearer.asked == [] and key.asked == []

    await chain.authenticate(connection((b"x-api-key", b"k"), (b"cookie", b"s=1")))
    assert bearer.asked == [] and len(key.asked) == 1

    assert await chain.authenticate(connection()) is ANONYMOUS
    assert cookie.asked == ["/v1/me", "/v1/me"]


async def test_an_authenticator_without_declared_headers_always_runs() -> None:
    ticket = Recording("ticket", None, answers=True)  # reads the query string, say
    chain = AuthChain([Recording("cookie", frozenset({b"cookie"}), answers=True), ticket])
    principal = await chain.authenticate(connection())
    assert principal.user_id == "ticket" and ticket.asked == ["/v1/me"]
