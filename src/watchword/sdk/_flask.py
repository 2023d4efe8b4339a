"""``flask_require``: a Flask view decorator for Watchword bearer tokens.

Flask stays optional: it is imported when a decorated view runs, not when the SDK is imported.
The verified token is put on ``flask.g.watchword_token``::

    verifier = Verifier(issuer="https://auth.example.com", credential=FEED_KEY)

    @app.get("/notes")
    @flask_require(verifier, "notes:read")
    def notes():
        return {"user": g.watchword_token.subject}
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

from watchword.sdk._bearer import bearer_token, refusal
from watchword.sdk._errors import WatchwordSDKError
from watchword.sdk._verifier import Verifier

__all__ = ["flask_require"]

View = TypeVar("View", bound=Callable[..., Any])


def flask_require(
    verifier: Verifier, *scopes: str, realm: str = "watchword"
) -> Callable[[View], View]:
    """Refuses the request (401/403/400/503 per RFC 6750) unless its bearer token verifies and
    holds every one of ``scopes``."""
    needed = tuple(scopes)

    def decorator(view: View) -> View:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            import flask  # lazily: Flask is an optional extra of the SDK

            error: WatchwordSDKError | None = None
            try:
                raw = bearer_token(flask.request.headers.get("Authorization"))
                if raw is not None:
                    flask.g.watchword_token = verifier.verify(raw).require_scopes(*needed)
                    return view(*args, **kwargs)
            except WatchwordSDKError as exc:
                error = exc
            answer = refusal(error, realm)
            response = flask.jsonify(answer.body)
            response.status_code = answer.status_code
            response.headers.update(answer.headers)
            return response

        return cast(View, wrapped)

    return decorator
