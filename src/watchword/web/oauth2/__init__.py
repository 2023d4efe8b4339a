"""The OpenID Connect half of the authorization server, one module per standard:
``authorize`` (RFC 6749 4.1 with RFC 7636, OpenID Connect Core 3.1.2), ``userinfo`` (Core
5.3) and ``logout`` (RP-Initiated Logout 1.0). The token, introspection and revocation
endpoints are in ``web/routes/oauth2.py``; discovery is in ``web/routes/wellknown.py``."""

from __future__ import annotations

from fastapi import FastAPI

from watchword.web.oauth2 import authorize, logout, userinfo


def install(app: FastAPI) -> None:
    app.include_router(userinfo.router)
    app.include_router(authorize.router)
    app.include_router(logout.router)


__all__ = ["install"]
