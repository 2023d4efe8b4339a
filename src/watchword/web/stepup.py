"""``require_recent_auth(...)``: ``require(...)`` plus a sign-in within the step-up limit.

It composes with whatever ``require`` checks (scopes, roles, CSRF, a person's session), and
adds only the age of the session's last proof of identity.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request

from watchword.domain.principal import Principal
from watchword.web.deps import container_of, require


def require_recent_auth(
    *scopes: str, session: bool = False, enrolling: bool = False
) -> Callable[[Request], Awaitable[Principal]]:
    inner = require(*scopes, session=session, enrolling=enrolling)

    async def dependency(request: Request) -> Principal:
        principal = await inner(request)
        await container_of(request).step_up.check(principal)
        return principal

    return dependency
