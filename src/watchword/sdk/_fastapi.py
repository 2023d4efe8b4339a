"""``require(scopes=...)``: a FastAPI dependency giving the route a verified token.

It reuses what ``BearerAuthMiddleware`` found when the middleware is installed; otherwise it
verifies the ``Authorization`` header itself with ``verifier`` or ``app.state.watchword_verifier``.
Refusals are ``HTTPException`` with the RFC 6750 status and ``WWW-Authenticate`` challenge::

    app = FastAPI()
    app.state.watchword_verifier = Verifier(issuer="https://auth.example.com")

    @app.get("/notes")
    async def notes(token: VerifiedToken = Depends(require(scopes=["notes:read"]))):
        return {"user": token.subject}
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from fastapi import HTTPException, Request

from watchword.sdk._bearer import bearer_token, refusal
from watchword.sdk._errors import WatchwordSDKError
from watchword.sdk._starlette import SCOPE_ERROR, SCOPE_TOKEN
from watchword.sdk._verifier import VerifiedToken, Verifier

__all__ = ["require"]


def require(
    scopes: Iterable[str] = (),
    *,
    verifier: Verifier | None = None,
    realm: str = "watchword",
) -> Callable[[Request], Awaitable[VerifiedToken]]:
    """A dependency answering the request's ``VerifiedToken`` holding every one of ``scopes``."""
    needed = frozenset(scopes)

    async def dependency(request: Request) -> VerifiedToken:
        try:
            token = await _token(request, verifier)
            if token is not None:
                token.require_scopes(*needed)
        except WatchwordSDKError as exc:
            raise _http_error(exc, realm) from None
        if token is None:
            raise _http_error(None, realm)
        return token

    return dependency


async def _token(request: Request, verifier: Verifier | None) -> VerifiedToken | None:
    if SCOPE_TOKEN in request.scope:
        error: WatchwordSDKError | None = request.scope.get(SCOPE_ERROR)
        if error is not None:
            raise error
        token: VerifiedToken | None = request.scope[SCOPE_TOKEN]
        return token
    raw = bearer_token(request.headers.get("authorization"))
    if raw is None:
        return None
    chosen = verifier or getattr(request.app.state, "watchword_verifier", None)
    if not isinstance(chosen, Verifier):
        raise RuntimeError(
            "require() needs a verifier: pass verifier=... or set app.state.watchword_verifier"
        )
    return await chosen.averify(raw)


def _http_error(error: WatchwordSDKError | None, realm: str) -> HTTPException:
    answer = refusal(error, realm)
    return HTTPException(answer.status_code, detail=answer.body, headers=answer.headers)
