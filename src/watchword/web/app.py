"""The app factory: settings in, a FastAPI app with every surface mounted out."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from watchword import __version__
from watchword.config import Settings
from watchword.domain import device
from watchword.domain.errors import StoreUnavailable
from watchword.services.container import Container
from watchword.web import authn_machines, compat_v1, errors, logs, openapi, pages
from watchword.web.authn import AuthChain, AuthenticationMiddleware, CookieAuthenticator
from watchword.web.authn_bearer import BearerTokenAuthenticator, UnclaimedBearerAuthenticator
from watchword.web.bodylimit import BodyLimitMiddleware
from watchword.web.collector import SurvivorFreezer
from watchword.web.cookies import SessionCookie
from watchword.web.hotpath import HotRoute, HotRoutes
from watchword.web.loop_lag import watch_loop_lag
from watchword.web.oauth2 import install as _install_oidc
from watchword.web.realtime import routes as realtime
from watchword.web.realtime.entry import RealtimeApp, RealtimeEntry
from watchword.web.routes import (
    account_lifecycle,
    admin,
    apikeys,
    auth,
    me,
    mfa,
    oauth2,
    passkey_sign_in,
    passkeys,
    sessions,
    signing_keys,
    system,
    users,
    wellknown,
)
from watchword.web.routes import tokens as token_routes
from watchword.web.security_headers import SecurityHeadersMiddleware

log = logging.getLogger("watchword")

# Every HTTP surface, in matching order: FastAPI tries routes in order, and /v1/me is the
# hottest path. The socket gateway, /api/v1 and the pages install themselves (below).
ROUTERS = (
    system,
    me,
    sessions,
    auth,
    users,
    admin,
    token_routes,  # refresh, revocation stream
    wellknown,  # JWKS, authorization server metadata
    apikeys,
    signing_keys,
    oauth2,  # token, introspection, revocation
    account_lifecycle,  # verification, change of address, password reset
    mfa,  # second factors: TOTP and recovery codes
    passkeys,  # the user's passkeys
    passkey_sign_in,  # sign-in with a passkey, and the passkey as a second factor
)


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
        # tokens: a stop signal ends the revocation streams before uvicorn waits
        restore_signals = token_routes.end_streams_on_exit_signal(container.tokens.revocations)
        lag_watch = asyncio.create_task(watch_loop_lag(), name="watchword-loop-lag")
        collector: SurvivorFreezer | None = getattr(app.state, "collector", None)
        freezing = None
        if collector is not None:
            freezing = asyncio.create_task(collector.run(), name="watchword-collector")
        try:
            yield
        finally:
            for task in (lag_watch, freezing):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            restore_signals()
            await container.stop()

    app = RealtimeApp(
        title="Watchword",
        version=__version__,
        summary="Sessions, tokens, API keys and an authenticated WebSocket gateway.",
        lifespan=lifespan,
        # FastAPI's own OpenTelemetry hooks look up the global providers on every request;
        # Watchword exports no traces, and its metrics are Prometheus' (web/metrics.py).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.container = container
    app.state.session_cookie = SessionCookie(settings)
    errors.install(app)
    for module in ROUTERS:
        app.include_router(module.router)
    realtime.install(app, container)  # the socket, tickets, publish, presence
    compat_mounted = compat_v1.install(app, container)  # /api/v1, with its own chain
    if not compat_mounted:
        app.state.unmounted = {
            compat_v1.PREFIX: "set AUTH_TYPE (the exercise's authentication) or "
            "WATCHWORD_COMPAT_V1=open to serve it"
        }
    pages.install(app, settings)  # WATCHWORD_UI=false leaves them out
    _install_oidc(app)  # the code flow's authorize and consent pages, UserInfo

    # The one chain for the Watchword API. Explicit credentials (bearer, API key, signature)
    # come before the cookie, which the browser attaches by itself.
    chain = AuthChain(
        [
            # bearer JWT, API key / opaque token and HTTP signature
            BearerTokenAuthenticator(container.tokens),
            authn_machines.ApiKeyAuthenticator(container.api_keys),
            authn_machines.OpaqueTokenAuthenticator(container.clients),
            authn_machines.SignatureAuthenticator(container.signing, settings.public_url),
            UnclaimedBearerAuthenticator(),  # RFC 6750 3.1: an unknown bearer is invalid
            CookieAuthenticator(container.sessions, settings.effective_cookie_name),
        ]
    )
    app.state.auth_chain = chain
    # (path prefix, chain): a surface with its own rules (the /api/v1 compat surface) adds
    # its prefix here; ``None`` leaves authentication to that surface's own chain.
    chains: list[tuple[str, AuthChain | None]] = [("", chain)]
    if compat_mounted:
        chains.append((compat_v1.PREFIX, None))
    # Innermost, after the chain: the hottest reads skip FastAPI's router (web/hotpath.py).
    hot_routes = {"/healthz": HotRoute(system.healthz_endpoint), "/v1/me": me.me_route(container)}
    app.add_middleware(HotRoutes, routes=hot_routes)
    app.add_middleware(AuthenticationMiddleware, chains=chains)
    app.add_middleware(authn_machines.SignedBodyMiddleware)  # signed bodies, replayed
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(SecurityHeadersMiddleware, hsts=settings.https_public_url)
    app.add_middleware(logs.AccessLogMiddleware)
    logs.install_redaction()
    # Before the whole stack, FastAPI's own layers included: the gateway's sockets skip it
    # (memory per idle socket), and the fan-out fast path needs the server's own send.
    app.realtime_entry = RealtimeEntry(app.through_stack, root=app, path=realtime.PATH)
    openapi.install(app)  # contract: every status each operation can answer
    return app


def app_from_env() -> FastAPI:
    """Entry point for uvicorn's ``--factory`` (one per worker process)."""
    settings = Settings()
    logs.configure(
        level=settings.log_level,
        json_format=settings.log_format == "json",
        access=settings.access_log,
    )
    app = create_app(settings)
    device.build_parser()  # before the first request, and kept out of the collector's sight
    # Everything built so far (modules, routes, the container) lives as long as the process:
    # out of the collector's sight, a full collection no longer walks it on every request
    # burst (a stall that showed as a p99 many times the p50).
    gc.collect()
    gc.freeze()
    # What comes later (10,000 sockets are most of the heap) is frozen as full collections
    # find it long-lived (web/collector.py).
    realtime = app.state.realtime
    app.state.collector = SurvivorFreezer(population=lambda: len(realtime.node.hub))
    return app
