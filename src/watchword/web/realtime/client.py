"""One connection's life: handshake authentication, welcome, the message loop, goodbye."""

from __future__ import annotations

import asyncio
import logging
import time

from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket, WebSocketDisconnect

from watchword.domain.clock import Clock, Randomness
from watchword.domain.device import describe_user_agent
from watchword.domain.errors import (
    AccountDisabled,
    InvalidCredential,
    StoreUnavailable,
    WatchwordError,
)
from watchword.domain.principal import AuthMethod, Principal
from watchword.web.authn import AuthChain, auth_error_of, authenticate_scope, principal_of
from watchword.web.deps import client_ip, origin_allowed
from watchword.web.logs import log_access
from watchword.web.realtime import closecodes, protocol
from watchword.web.realtime.closecodes import CloseCode
from watchword.web.realtime.credentials import RealtimeCredentials, credential_binding
from watchword.web.realtime.node import CONNECT_SCOPE, RealtimeNode
from watchword.web.realtime.transport.connection import Connection
from watchword.web.realtime.transport.frames import frame_writer

log = logging.getLogger("watchword.realtime")


def close_code_for(exc: WatchwordError) -> CloseCode:
    if isinstance(exc, StoreUnavailable):
        return closecodes.UNAVAILABLE
    if isinstance(exc, AccountDisabled) or getattr(exc, "code", "") == "account_disabled":
        return closecodes.ACCOUNT_DISABLED
    if getattr(exc, "code", "") == "session_revoked":
        return closecodes.SESSION_REVOKED
    return closecodes.INVALID_CREDENTIAL


class Gateway:
    """Serves sockets for one node."""

    def __init__(
        self,
        *,
        node: RealtimeNode,
        credentials: RealtimeCredentials,
        handshake: AuthChain,
        clock: Clock,
        randomness: Randomness,
    ) -> None:
        self.node = node
        self.credentials = credentials
        self._handshake = handshake
        self._clock = clock
        self._random = randomness

    async def serve(self, websocket: WebSocket, chain: AuthChain | None = None) -> None:
        """Serve one socket; ``chain`` first authenticates it as the app's middleware would
        (when the socket did not come through it)."""
        # Few frames stay suspended for a socket's life (each costs memory per idle socket):
        # this one and ``_run``'s. The handshake and the setup return before the loop.
        try:
            if chain is not None:
                await authenticate_scope(websocket.scope, chain)
            conn = await self._open(websocket)
            if conn is not None:
                await self._run(websocket, conn)
        except (WebSocketDisconnect, OSError):
            # The peer left mid-handshake (or before its close frame): nothing to tell it.
            log.debug("realtime: peer gone during the handshake")

    async def _open(self, websocket: WebSocket) -> Connection | None:
        """Authenticate, accept and admit: the connection, or ``None`` once refused."""
        # The handshake's reads (headers, query string) go through a view of the scope that
        # ends with the handshake: the socket's ``WebSocket`` lives for hours, and would keep
        # the parsed headers and query parameters all that time (memory per idle socket).
        handshake = HTTPConnection(websocket.scope)
        offered: list[str] = websocket.scope.get("subprotocols") or []
        subprotocol = protocol.PROTOCOL if protocol.PROTOCOL in offered else None
        if self.node.stopping:
            await websocket.accept(subprotocol)
            await websocket.close(closecodes.GOING_AWAY.code, closecodes.GOING_AWAY.reason())
            return None
        principal: Principal | None = None
        refusal: tuple[CloseCode, str | None] | None = None
        try:
            principal = await self._handshake_principal(handshake)
        except WatchwordError as exc:
            refusal = (close_code_for(exc), exc.message)
        except _Refused as refused:
            refusal = (refused.code, refused.detail)
        await websocket.accept(subprotocol)
        if refusal is None and principal is None:
            principal, refusal = await self._first_message_auth(websocket)
        if refusal is None:
            assert principal is not None
            refusal = _scope_refusal(principal)
        if refusal is not None:
            code, detail = refusal
            await websocket.close(code.code, code.reason(detail))
            return None
        assert principal is not None and principal.user_id is not None
        return await self._admit(websocket, principal, handshake)

    async def _handshake_principal(self, handshake: HTTPConnection) -> Principal | None:
        principal = await self._handshake.authenticate(handshake)
        if principal.is_authenticated:
            return principal
        principal = principal_of(handshake)
        if principal.is_authenticated:
            if principal.method is AuthMethod.COOKIE:
                # Cross-Site WebSocket Hijacking: the browser attaches the cookie to a socket
                # opened by any page, so only pages from allowed origins may use it.
                origin = handshake.headers.get("origin")
                if origin is None or not origin_allowed(handshake, origin):
                    raise _Refused(closecodes.ORIGIN_NOT_ALLOWED, None)
            return principal
        error = auth_error_of(handshake)
        if error is not None:
            raise error
        return None

    async def _first_message_auth(
        self, websocket: WebSocket
    ) -> tuple[Principal | None, tuple[CloseCode, str | None] | None]:
        try:
            message = await asyncio.wait_for(websocket.receive(), self.node.limits.auth_timeout)
        except TimeoutError:
            return None, (closecodes.UNAUTHENTICATED, "no credential in time")
        if message["type"] == "websocket.disconnect":
            return None, (closecodes.UNAUTHENTICATED, None)
        text = message.get("text")
        if text is None or _too_large(text, self.node.limits.max_message_bytes):
            return None, (closecodes.UNAUTHENTICATED, "expected an auth message")
        try:
            parsed = protocol.parse(text)
        except protocol.ProtocolError as exc:
            return None, (closecodes.BAD_MESSAGE, str(exc))
        if not isinstance(parsed, protocol.Auth):
            return None, (closecodes.UNAUTHENTICATED, "expected an auth message")
        try:
            principal = await self.credentials.verify(token=parsed.token, ticket=parsed.ticket)
        except WatchwordError as exc:
            return None, (close_code_for(exc), exc.message)
        return principal, None

    async def _admit(
        self, websocket: WebSocket, principal: Principal, handshake: HTTPConnection
    ) -> Connection | None:
        started = time.perf_counter()
        node = self.node
        limits = node.limits
        assert principal.user_id is not None
        frames = frame_writer(websocket.scope)
        conn = Connection(
            id=self._random.token(12),
            transport=websocket,
            user_id=principal.user_id,
            session_id=principal.session_id,
            scopes=principal.scopes,
            method=principal.method.value,
            expires_at=node.expiry_for(principal),
            device=str(describe_user_agent(handshake.headers.get("user-agent"))["label"]),
            ip=client_ip(handshake),
            connected_at=self._clock.now(),
            queue_limit=limits.send_queue,
            rate=limits.rate,
            burst=limits.burst,
            close_timeout=limits.close_timeout,
            abort=_Abort(asyncio.current_task()),
            frames=frames,
            credential=credential_binding(principal),
        )
        welcome = protocol.welcome(
            connection_id=conn.id,
            user_id=conn.user_id,
            session_id=conn.session_id,
            expires_at=conn.expires_at,
            channels=[protocol.USER_PREFIX + conn.user_id],
            ping_interval=limits.ping_interval,
            node=node.node_id,
        )
        refusal = await node.admit(conn, welcome)
        if refusal is not None:
            await websocket.close(refusal.code, refusal.reason())
            return None
        if frames is not None:
            frames.shed_handshake()  # memory per idle socket
        # Logged as accepted only now that it is authenticated and admitted.
        log_access(
            "WEBSOCKET",
            websocket.scope["path"],  # not .url: the URL object would live with the socket
            websocket.scope.get("query_string", b"").decode("latin-1"),
            101,
            started,
            conn.method,
        )
        return conn

    async def _run(self, websocket: WebSocket, conn: Connection) -> None:
        """The message loop, until the peer goes or the connection is cut off."""
        max_bytes = self.node.limits.max_message_bytes
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                if conn.closing:
                    continue  # after our close frame: wait for the disconnect, ignore the rest
                text = message.get("text")
                if text is None:
                    data = message.get("bytes") or b""
                    if len(data) > max_bytes:
                        conn.close(closecodes.MESSAGE_TOO_LARGE, f"limit {max_bytes} bytes")
                    else:
                        conn.close(closecodes.BAD_MESSAGE, "text frames only")
                    continue
                if _too_large(text, max_bytes):
                    conn.close(closecodes.MESSAGE_TOO_LARGE, f"limit {max_bytes} bytes")
                    continue
                if not conn.received():
                    conn.close(closecodes.RATE_LIMITED)
                    continue
                try:
                    parsed = protocol.parse(text)
                except protocol.ProtocolError as exc:
                    conn.close(closecodes.BAD_MESSAGE, str(exc))
                    continue
                await self._handle(conn, parsed)
        except asyncio.CancelledError:
            abort = conn.abort_hook
            if not (isinstance(abort, _Abort) and abort.fired):
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        finally:
            conn.mark_disconnected()
            await self.node.leave(conn)

    async def _handle(self, conn: Connection, message: protocol.ClientMessage) -> None:
        if isinstance(message, protocol.Ping):
            conn.deliver(protocol.reply("pong", message.ref))
        elif isinstance(message, protocol.Pong):
            return
        elif isinstance(message, protocol.Subscribe):
            conn.deliver(self._subscribe(conn, message.channel, message.ref))
        elif isinstance(message, protocol.Unsubscribe):
            conn.deliver(self._unsubscribe(conn, message.channel, message.ref))
        elif isinstance(message, protocol.Refresh):
            await self._refresh(conn, message)
        elif isinstance(message, protocol.Resume):
            channels = conn.channels | {protocol.USER_PREFIX + conn.user_id}
            complete, texts = self.node.history.after(message.since, channels)
            for text in texts:
                conn.deliver(text)
            conn.deliver(
                protocol.reply("resumed", message.ref, complete=complete, replayed=len(texts))
            )
        elif isinstance(message, protocol.Auth):
            conn.deliver(
                protocol.error(
                    "already_authenticated", "This connection is authenticated.", message.ref
                )
            )

    def _subscribe(self, conn: Connection, channel: str, ref: str | None) -> str:
        if not protocol.channel_allowed(channel, conn.user_id, conn.scopes):
            return protocol.error("forbidden", f"You may not subscribe to {channel[:100]!r}.", ref)
        if channel == protocol.USER_PREFIX + conn.user_id:
            return protocol.reply("subscribed", ref, channel=channel)
        limit = self.node.limits.max_subscriptions
        if channel not in conn.channels and len(conn.channels) >= limit:
            return protocol.error(
                "too_many_subscriptions",
                f"At most {self.node.limits.max_subscriptions} subscriptions per connection.",
                ref,
            )
        self.node.hub.subscribe(conn, channel)
        return protocol.reply("subscribed", ref, channel=channel)

    def _unsubscribe(self, conn: Connection, channel: str, ref: str | None) -> str:
        if channel == protocol.USER_PREFIX + conn.user_id:
            return protocol.error(
                "forbidden", "Your own user channel carries your security events.", ref
            )
        self.node.hub.unsubscribe(conn, channel)
        return protocol.reply("unsubscribed", ref, channel=channel)

    async def _refresh(self, conn: Connection, message: protocol.Refresh) -> None:
        try:
            principal = await self.credentials.verify(token=message.token, ticket=message.ticket)
        except (InvalidCredential, StoreUnavailable) as exc:
            # The old credential still holds until its deadline: the client may try again.
            conn.deliver(protocol.error(exc.code, exc.message, message.ref))
            return
        except WatchwordError as exc:
            conn.close(close_code_for(exc), exc.message)
            return
        if principal.user_id != conn.user_id or principal.session_id != conn.session_id:
            conn.close(closecodes.REFRESH_REFUSED, "another user or session")
            return
        refusal = _scope_refusal(principal)
        if refusal is not None:
            conn.close(*refusal)
            return
        conn.carried_scopes = principal.scopes
        self.node.rebind(conn, credential_binding(principal))
        self.node.apply_scopes(conn, principal.scopes)
        if conn.closing:
            return
        previous, conn.expires_at = conn.expires_at, self.node.expiry_for(principal)
        if previous is None or conn.expires_at is None or conn.expires_at > previous:
            conn.refresh_sent = False  # a later deadline: remind again before it
        conn.deliver(
            protocol.reply(
                "refreshed",
                message.ref,
                expires_at=protocol.iso(conn.expires_at) if conn.expires_at else None,
            )
        )


class _Abort:
    """Gives up on a socket whose close frame could not be written: cancels its handler,
    which then ends quietly (a cancellation from anywhere else still propagates)."""

    __slots__ = ("fired", "handler")

    def __init__(self, handler: asyncio.Task[None] | None) -> None:
        self.handler = handler
        self.fired = False

    def __call__(self) -> None:
        self.fired = True
        if self.handler is not None:
            self.handler.cancel()


class _Refused(Exception):
    def __init__(self, code: CloseCode, detail: str | None) -> None:
        super().__init__(code.name)
        self.code = code
        self.detail = detail


def _scope_refusal(principal: Principal) -> tuple[CloseCode, str | None] | None:
    if principal.kind != "user" or principal.user_id is None:
        return closecodes.INSUFFICIENT_SCOPE, "only users connect"
    if CONNECT_SCOPE not in principal.scopes:
        return closecodes.INSUFFICIENT_SCOPE, None
    return None


def _too_large(text: str, max_bytes: int) -> bool:
    if len(text) > max_bytes:
        return True
    return len(text) * 4 > max_bytes and len(text.encode("utf-8", "surrogatepass")) > max_bytes
