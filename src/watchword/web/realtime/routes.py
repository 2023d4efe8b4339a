"""The gateway's HTTP surface: the socket, tickets, publishing and presence."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket

from watchword.domain.errors import Forbidden, InsufficientScope, InvalidInput
from watchword.domain.principal import Principal
from watchword.services.container import Container
from watchword.services.context import RequestContext
from watchword.web.authn import AuthChain
from watchword.web.deps import require
from watchword.web.errors import PayloadTooLarge
from watchword.web.realtime import protocol
from watchword.web.realtime.client import Gateway
from watchword.web.realtime.credentials import (
    BearerVerifier,
    MachineVerifier,
    QueryTokenAuthenticator,
    RealtimeCredentials,
    SubprotocolBearerAuthenticator,
    TicketAuthenticator,
)
from watchword.web.realtime.node import (
    PRESENCE_TOUCH_INTERVAL,
    Limits,
    RealtimeNode,
    UserScopes,
)
from watchword.web.realtime.presence import MemoryPresence, Presence, PresenceEntry
from watchword.web.realtime.tickets import MemoryTicketStore, TicketGrant, Tickets, TicketStore

PATH = "/v1/realtime"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class Realtime:
    """Everything the gateway needs on one node, built from the container."""

    def __init__(
        self,
        container: Container,
        *,
        presence: Presence | None = None,
        ticket_store: TicketStore | None = None,
    ) -> None:
        settings = container.settings
        if presence is None or ticket_store is None:
            # With Redis (a cluster), presence and tickets live there so every node sees them.
            shared_presence, shared_tickets = container.cluster.realtime_stores(
                PresenceEntry, TicketGrant, presence_ttl=3 * PRESENCE_TOUCH_INTERVAL
            )
            presence = presence or shared_presence
            ticket_store = ticket_store or shared_tickets
        self.limits = Limits(
            max_per_user=settings.realtime_max_connections_per_user,
            max_message_bytes=settings.realtime_max_message_bytes,
            max_event_bytes=settings.realtime_max_event_bytes,
            max_subscriptions=settings.realtime_max_subscriptions,
            send_queue=settings.realtime_send_queue,
            rate=settings.realtime_rate_limit,
            burst=settings.realtime_rate_burst,
            ping_interval=settings.realtime_ping_interval,
            pong_timeout=settings.realtime_pong_timeout,
            auth_timeout=settings.realtime_auth_timeout,
            refresh_window=settings.realtime_refresh_window,
            credential_max_age=settings.realtime_credential_max_age,
            sweep_interval=settings.realtime_sweep_interval,
            close_timeout=settings.realtime_close_timeout,
            touch_interval=float(settings.session_touch_interval),
        )
        self.node = RealtimeNode(
            node_id=container.control.node_id,
            bus=container.bus,
            clock=container.clock,
            randomness=container.randomness,
            presence=presence or MemoryPresence(),
            limits=self.limits,
            history_size=settings.realtime_history_size,
            touch_session=container.sessions.touch,
            user_scopes=_user_scopes(container),
        )
        self.tickets = Tickets(
            store=ticket_store
            or MemoryTicketStore(clock=container.clock, max_tickets=settings.realtime_max_tickets),
            clock=container.clock,
            randomness=container.randomness,
            ttl=settings.realtime_ticket_ttl,
        )
        bearer = cast("BearerVerifier | None", getattr(container, "tokens", None))
        self.credentials = RealtimeCredentials(
            tickets=self.tickets,
            sessions=container.db.sessions,
            revoked=container.control.revoked,
            clock=container.clock,
            bearer=bearer,
            **_machine_verifiers(container),
        )
        self.gateway = Gateway(
            node=self.node,
            credentials=self.credentials,
            handshake=AuthChain(
                [
                    TicketAuthenticator(self.credentials),
                    SubprotocolBearerAuthenticator(self.credentials),
                    QueryTokenAuthenticator(self.credentials),
                ]
            ),
            clock=container.clock,
            randomness=container.randomness,
        )
        container.control.on_event(self.node.on_control)
        on_created = getattr(container.sessions, "on_created", None)
        if on_created is not None:
            on_created(self.node.on_session_created)
        lifecycle = getattr(container, "lifecycle", None)  # account lifecycle steps
        if lifecycle is not None:
            lifecycle.on_security_event(self.node.on_account_event)


def _machine_verifiers(container: Container) -> dict[str, MachineVerifier]:
    """API keys and clients' opaque tokens, checked as the HTTP chain checks them."""
    verifiers: dict[str, MachineVerifier] = {}
    api_keys = getattr(container, "api_keys", None)
    clients = getattr(container, "clients", None)
    if api_keys is not None:

        async def api_key(presented: str) -> Principal:
            return cast(Principal, await api_keys.authenticate(presented, RequestContext))

        verifiers["api_key"] = api_key
    if clients is not None:

        async def opaque_token(presented: str) -> Principal:
            return cast(Principal, await clients.authenticate_opaque(presented, RequestContext))

        verifiers["opaque_token"] = opaque_token
    return verifiers


def _user_scopes(container: Container) -> UserScopes:
    """What a user's roles grant now (None when the user is gone or disabled)."""

    async def user_scopes(user_id: str) -> frozenset[str] | None:
        user = await container.db.users.get(user_id)
        if user is None or user.disabled:
            return None
        return container.scope_policy.scopes_for_roles(user.roles)

    return user_scopes


def realtime_of(conn: HTTPConnection) -> Realtime:
    return cast(Realtime, conn.app.state.realtime)


# -- HTTP ----------------------------------------------------------------------------------


_ID: dict[str, Any] = {"pattern": r"^[A-Za-z0-9_.:\-]{1,100}$"}
_CHANNEL: dict[str, Any] = {"pattern": r"^[A-Za-z0-9_.\-]{1,100}$"}
_EVENT: dict[str, Any] = {"pattern": r"^[A-Za-z0-9_.:\-]{1,64}$"}


class PublishBody(BaseModel):
    # The schema says what the handler checks: exactly one of user_id and channel, and the
    # same name patterns as the protocol.
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"oneOf": [{"required": ["user_id"]}, {"required": ["channel"]}]},
    )

    # Patterns declared, not enforced by the model: the handler answers 400 with the rule.
    user_id: (
        Annotated[str, Field(min_length=1, max_length=100, json_schema_extra=_ID)]
        | (SkipJsonSchema[None])
    ) = None
    channel: (
        Annotated[str, Field(min_length=1, max_length=100, json_schema_extra=_CHANNEL)]
        | (SkipJsonSchema[None])
    ) = None
    event: str = Field(min_length=1, max_length=64, json_schema_extra=_EVENT)
    data: Any = None


def build_router() -> APIRouter:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        realtime: Realtime = app.state.realtime
        await realtime.node.start()
        try:
            yield
        finally:
            await realtime.node.stop()

    router = APIRouter(prefix=PATH, tags=["realtime"], lifespan=lifespan)

    @router.websocket("")
    async def realtime_socket(websocket: WebSocket) -> None:
        await realtime_of(websocket).gateway.serve(websocket)

    @router.post(
        "/ticket",
        status_code=201,
        summary="A single-use ticket to open a socket with ?ticket=",
    )
    async def issue_ticket(
        request: Request, principal: Principal = Depends(require("realtime"))
    ) -> JSONResponse:
        if principal.user_id is None:
            raise Forbidden("Only users open realtime connections.")
        realtime = realtime_of(request)
        ticket, grant = await realtime.tickets.issue(
            user_id=principal.user_id,
            session_id=principal.session_id,
            scopes=principal.scopes,
            method=principal.method.value,
            credential_expires_at=principal.expires_at,
            credential_id=principal.credential_id,
        )
        return JSONResponse(
            {
                "ticket": ticket,
                "expires_at": protocol.iso(grant.expires_at),
                "expires_in": max(
                    0, int((grant.expires_at - grant.issued_at) / timedelta(seconds=1))
                ),
            },
            status_code=201,
            headers=NO_STORE,
        )

    @router.post(
        "/publish",
        status_code=202,
        summary="Send an event to all of a user's connections or to a channel's subscribers",
    )
    async def publish(
        body: PublishBody,
        request: Request,
        principal: Principal = Depends(require("realtime:publish")),
    ) -> dict[str, Any]:
        if (body.user_id is None) == (body.channel is None):
            raise InvalidInput("Give exactly one of 'user_id' and 'channel'.")
        if not protocol.valid_event_name(body.event):
            raise InvalidInput("'event' is 1-64 letters, digits, '_', '.', ':' or '-'.")
        if body.user_id is not None:
            if not protocol.valid_id(body.user_id):
                raise InvalidInput("'user_id' is not a valid id.")
            channel = protocol.USER_PREFIX + body.user_id
        else:
            assert body.channel is not None
            if not protocol.valid_channel_name(body.channel):
                raise InvalidInput(
                    "'channel' is 1-100 letters, digits, '_', '.' or '-' "
                    "(use user_id for a user's connections)."
                )
            channel = body.channel
        realtime = realtime_of(request)
        size = len(json.dumps(body.data, separators=(",", ":")).encode())
        if size > realtime.limits.max_event_bytes:
            raise PayloadTooLarge(
                f"'data' is {size} bytes; the limit is {realtime.limits.max_event_bytes}."
            )
        event_id = await realtime.node.publish(channel, body.event, body.data)
        return {"status": "published", "id": event_id, "channel": channel}

    @router.get("/presence", summary="A user's live connections, with device and session")
    async def presence(
        request: Request,
        user_id: str | None = Query(default=None, min_length=1, max_length=100),
        principal: Principal = Depends(require()),
    ) -> dict[str, Any]:
        target = user_id or principal.user_id
        if target is None:
            raise InvalidInput("Give user_id.")
        if target != principal.user_id and "realtime:presence" not in principal.scopes:
            raise InsufficientScope(frozenset({"realtime:presence"}))
        entries = await realtime_of(request).node.presence.list(target)
        return {"user_id": target, "connections": [e.public() for e in entries]}

    return router


def install(app: FastAPI, container: Container) -> Realtime:
    """Mount the gateway on ``app``: its routes, and its start and stop in the lifespan."""
    realtime = Realtime(container)
    app.state.realtime = realtime
    app.include_router(build_router())
    return realtime


__all__ = ["PATH", "Realtime", "install", "realtime_of"]
