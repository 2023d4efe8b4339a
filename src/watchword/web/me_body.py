"""The body of ``GET /v1/me``, encoded once per cached principal.

Everything in it stays the same for a cached principal (the account, how the session signed
in, the session's fixed parts, its CSRF token) except the session's three times, which move
with its last-seen time (at most once a second). The rest is kept as two encoded halves around
those times, so a call encodes three datetimes instead of building and encoding the whole
document: profiled on one core, building it cost about as much as authenticating the request.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from watchword.domain.sessions import Session
from watchword.web.responses import json_headers
from watchword.web.views import session_static_view, session_times


@dataclass(slots=True, eq=False)
class EncodedMe:
    # The sign-in record it shows (auth_time, amr), compared by identity: a record read
    # again (a step-up) makes a new body. The rest is fixed for the principal it is kept on.
    shown: dict[str, Any] | None
    session: Session | None
    head: bytes  # the whole body when there is no session
    tail: bytes
    seen: datetime | None = None
    body: bytes = b""
    # The answer's header lines after the JSON ones, and all of them for ``described``.
    extra_headers: tuple[tuple[bytes, bytes], ...] = ()
    described: bytes | None = None
    headers: tuple[tuple[bytes, bytes], ...] = ()

    def body_at(self, last_seen: datetime | None) -> bytes:
        """The body with the session's times as of ``last_seen`` (made again only when it
        moved)."""
        if self.session is None or last_seen is None:
            return self.head
        if last_seen != self.seen:
            times = orjson.dumps(session_times(self.session, last_seen))
            self.body = self.head + times[1:-1] + self.tail
            self.seen = last_seen
        return self.body

    def answer_at(
        self, last_seen: datetime | None
    ) -> tuple[bytes, tuple[tuple[bytes, bytes], ...]]:
        """``body_at`` and its header lines (encoded again only when the body changed)."""
        body = self.body_at(last_seen)
        if body is not self.described:
            self.headers = json_headers(body, self.extra_headers)
            self.described = body
        return body, self.headers


def encode_me(
    *,
    user: dict[str, Any] | None,
    authentication: dict[str, Any],
    session: Session | None,
    shown: dict[str, Any] | None,
    csrf_token: str | None,
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> EncodedMe:
    """The same document as ``{"user", "session", "authentication", "csrf_token"?}`` written
    whole by orjson, in the same key order, split where the session's times go."""
    if session is None:
        whole = orjson.dumps({"user": user, "session": None, "authentication": authentication})
        return EncodedMe(shown=shown, session=None, head=whole, tail=b"", extra_headers=headers)
    fixed = orjson.dumps({**session_static_view(session), "current": True})
    head = b"".join((b'{"user":', orjson.dumps(user), b',"session":', fixed[:-1], b","))
    tail = [b'},"authentication":', orjson.dumps(authentication)]
    if csrf_token is not None:
        tail += [b',"csrf_token":', orjson.dumps(csrf_token)]
    tail.append(b"}")
    return EncodedMe(
        shown=shown, session=session, head=head, tail=b"".join(tail), extra_headers=headers
    )
