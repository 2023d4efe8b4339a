"""``Auth``: the template of every strategy of the exercise (0x01 tasks 3-5, 13; 0x02 task 4).

A strategy answers three questions for ``before_request``: does this path need a credential
(``require_auth``), is a credential there at all (``authorization_header``,
``session_cookie``), and whose is it (``current_user``). The plain ``Auth`` never knows a user,
so with it every protected path is 401 without a credential and 403 with one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection

from watchword.domain.users import User
from watchword.services.context import RequestContext
from watchword.web.compat_v1.settings import CompatSettings
from watchword.web.deps import client_ip

if TYPE_CHECKING:
    from watchword.services.container import Container

MAX_ID_LENGTH = 64


def plausible_id(value: object) -> bool:
    """An id worth a store lookup: short, printable text (no NUL for PostgreSQL)."""
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH and value.isprintable()


def request_context(conn: HTTPConnection, container: Container) -> RequestContext:
    # Same client address as the main API (the proxy's last hop, never the client's own claim).
    return RequestContext.of(client_ip(conn), conn.headers.get("user-agent"))


class Auth:
    """Which paths need authentication, and where a request's credentials are."""

    def __init__(self, container: Container, settings: CompatSettings) -> None:
        self.container = container
        self.settings = settings

    def require_auth(self, path: str | None, excluded_paths: Sequence[str] | None) -> bool:
        """False when ``path`` is excluded: slash tolerant, and an entry ending in ``*`` is a
        prefix (``/api/v1/stat*`` excludes ``/api/v1/status`` and ``/api/v1/stats``)."""
        if not isinstance(path, str) or not excluded_paths:
            return True
        slashed = path if path.endswith("/") else path + "/"
        for entry in excluded_paths:
            if not isinstance(entry, str) or not entry:
                continue
            if entry.endswith("*"):
                if slashed.startswith(entry[:-1]):
                    return False
            elif slashed == (entry if entry.endswith("/") else entry + "/"):
                return False
        return True

    def authorization_header(self, request: HTTPConnection | None = None) -> str | None:
        """The ``Authorization`` header's value, or None."""
        if request is None:
            return None
        return request.headers.get("authorization")

    def session_cookie(self, request: HTTPConnection | None = None) -> str | None:
        """The value of the cookie named by ``SESSION_NAME``, or None."""
        if request is None:
            return None
        return request.cookies.get(self.settings.session_name)

    async def current_user(self, request: HTTPConnection | None = None) -> User | None:
        """The plain strategy knows nobody."""
        return None
