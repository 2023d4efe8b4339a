"""The app factory: settings in, a FastAPI app with every surface mounted out."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from watchword import __version__
from watchword.config import Settings
from watchword.domain.errors import StoreUnavailable
from watchword.services.container import Container
from watchword.web import errors
from watchword.web.authn import AuthChain, AuthenticationMiddleware, CookieAuthenticator
from watchword.web.authn_bearer import BearerTokenAuthenticator
from watchword.web.bodylimit import BodyLimitMiddleware
from watchword.web.cookies import SessionCookie
from watchword.web.realtime import routes as realtime
from watchword.web.routes import admin, auth, me, sessions, system, users, wellknown
from watchword.web.routes import tokens as token_routes

log = logging.getLogger("watchword")


class SchemaNotCurrent(RuntimeError):
    pass


def create_app(settings: Settings | None = None, *, container: Container | None = None) -> FastAPI:
    settings = settings or (container.settings if container else Settings())
    container = container or Container(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            pending = (
                await container.db.pending_migrations()
                if hasattr(container.db, "pending_migrations")
                else set()
            )
        except StoreUnavailable:
            # Start anyway: every request that needs the database answers 503 (fail closed)
            # and /readyz says so, until the database returns.
            log.warning("database unreachable at start; answering 503 until it returns")
            pending = set()
        if pending:
            raise SchemaNotCurrent(
                "The database schema is not current: run `watchword db upgrade` first."
            )
        await container.start()
        # tokens (issue 3): a stop signal ends the revocation streams before uvicorn waits
        restore_signals = token_routes.end_streams_on_exit_signal(container.tokens.revocations)
        try:
            yield
        finally:
            restore_signals()
            await container.stop()

    app = FastAPI(
        title="Watchword",
        version=__version__,
        summary="Sessions, tokens, API keys and an authenticated WebSocket gateway.",
        lifespan=lifespan,
    )
    app.state.container = container
    app.state.session_cookie = SessionCookie(settings)
    errors.install(app)
    # Ordered by traffic: FastAPI matches routes in order, and /v1/me is the hottest path.
    for module in (system, me, sessions, auth, users, admin):
        app.include_router(module.router)
    # -- routers of later surfaces (tokens, machines, realtime, compat) go here ----------
    # tokens (issue 3): refresh, revocation stream, JWKS and authorization server metadata
    for module in (token_routes, wellknown):
        app.include_router(module.router)
    realtime.install(app, container)  # issue 5: /v1/realtime socket, tickets, publish
    # machines (issue 4): API keys, signing keys, OAuth2 token / introspection / revocation
    from watchword.web import authn_machines
    from watchword.web.routes import apikeys, oauth2, signing_keys

    for module in (apikeys, signing_keys, oauth2):
        app.include_router(module.router)
    # compat (issue 7): /api/v1, the exercise's surface with its own before_request chain.
    from watchword.web import compat_v1

    compat_mounted = compat_v1.install(app, container)
    # account lifecycle: verification, change of address, password reset
    from watchword.web.routes import account_lifecycle

    app.include_router(account_lifecycle.router)
    from watchword.web.routes import mfa

    app.include_router(mfa.router)  # second factors: TOTP and recovery codes

    # The one chain for the Watchword API. Explicit credentials (bearer, API key, signature)
    # come before the cookie, which the browser attaches by itself.
    chain = AuthChain(
        [
            # bearer JWT (issue 3), API key / opaque token and HTTP signature (issue 4)
            BearerTokenAuthenticator(container.tokens),
            authn_machines.ApiKeyAuthenticator(container.api_keys),
            authn_machines.OpaqueTokenAuthenticator(container.clients),
            authn_machines.SignatureAuthenticator(container.signing, settings.public_url),
            CookieAuthenticator(container.sessions, settings.effective_cookie_name),
        ]
    )
    app.state.auth_chain = chain
    # (path prefix, chain): a surface with its own rules (the /api/v1 compat surface) adds
    # its prefix here; ``None`` leaves authentication to that surface's own chain.
    chains: list[tuple[str, AuthChain | None]] = [("", chain)]
    if compat_mounted:
        chains.append((compat_v1.PREFIX, None))
    app.add_middleware(AuthenticationMiddleware, chains=chains)
    app.add_middleware(authn_machines.SignedBodyMiddleware)  # issue 4: signed bodies, replayed
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    return app


def app_from_env() -> FastAPI:
    """Entry point for uvicorn's ``--factory`` (one per worker process)."""
    return create_app()
