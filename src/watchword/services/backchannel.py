"""OpenID Connect Back-Channel Logout 1.0: a signed logout token POSTed to every app that
signed in through a session, when that session ends by any means.

The rows come from the session stores, written in the transaction that ends the session, so
a restart or an app that is down loses nothing: this sender delivers due rows, and a failed
delivery is retried with exponential backoff (the mail outbox's pattern, ``services/mail.py``).
Each attempt signs a fresh token (``iat``), with the row id as ``jti`` so the app can drop
duplicates. The sender wakes at once when this node commits a transaction that queued
logouts (the node that ended the session delivers them); the poll is a floor, and picks up
what another node queued and could not send.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

import httpx
import jwt

from watchword.domain.app_grants import BACKCHANNEL_LOGOUT_EVENT, PendingLogout
from watchword.domain.clock import Clock
from watchword.domain.errors import StoreUnavailable
from watchword.services.clients import ClientService
from watchword.services.keys import KeyService, SigningKey
from watchword.services.outbox import Delivery
from watchword.services.wakeup import wait_for_wake
from watchword.stores.app_grants import LogoutOutbox

log = logging.getLogger("watchword.backchannel")

BATCH = 50
LOGOUT_TOKEN_TTL = 120  # seconds: section 2.4 asks for a short lifetime
LOGOUT_TOKEN_TYPE = "logout+jwt"  # section 2.4 (RFC 8725 explicit typing)
SWEEP_EVERY = timedelta(hours=1)
# How often sessions that ran out are looked for (their apps' logouts wait at most this long).
EXPIRY_CHECK_EVERY = timedelta(seconds=30)


async def _nothing() -> None:
    return None


class DeliveryFailed(Exception):
    """The app did not answer 200 (or 204) to the logout token."""


class BackchannelLogout:
    def __init__(
        self,
        *,
        outbox: LogoutOutbox,
        clients: ClientService,
        id_keys: KeyService,
        access_keys: KeyService,
        clock: Clock,
        issuer: str,
        timeout: float,
        poll_interval: float,
        retry_base: float,
        retry_max: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._outbox = outbox
        self._clients = clients
        self._id_keys = id_keys
        self._access_keys = access_keys
        self._clock = clock
        self.issuer = issuer
        self._timeout = timeout
        self._poll = poll_interval
        self._delivery = Delivery(
            ledger=outbox,
            clock=clock,
            retry_base=retry_base,
            retry_max=retry_max,
            failures=(DeliveryFailed, httpx.HTTPError, StoreUnavailable),
            log=log,
        )
        self._transport = transport
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._next_sweep = clock.now()
        self._next_expiry_check = clock.now()
        # More upkeep that rides on this loop (the app grants' expired codes).
        self.after_sweep: Callable[[], Awaitable[object]] = _nothing
        # Sessions that expired (absolute or idle) end their apps' grants and queue their
        # logout rows; set by the container (``AppTokens.end_with_expired_sessions``).
        self.end_expired: Callable[[], Awaitable[object]] = _nothing
        outbox.on_queued(self._wake.set)

    def logout_token(self, logout: PendingLogout, alg: str) -> str:
        """Section 2.4: iss, aud, iat, exp, jti, sub, sid and the logout event; no nonce."""
        key = self._key_for(alg)
        now = int(self._clock.now().timestamp())
        claims = {
            "iss": self.issuer,
            "aud": logout.client_id,
            "iat": now,
            "exp": now + LOGOUT_TOKEN_TTL,
            "jti": logout.id,
            "sub": logout.user_id,
            "sid": logout.session_id,
            "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
        }
        return jwt.encode(
            claims,
            key.private,
            algorithm=key.algorithm,
            headers={"kid": key.kid, "typ": LOGOUT_TOKEN_TYPE},
        )

    def _key_for(self, alg: str) -> SigningKey:
        # Signed as the app's ID tokens are, so it verifies with what it already trusts.
        if alg == self._access_keys.algorithm and alg != self._id_keys.algorithm:
            return self._access_keys.signing_key()
        return self._id_keys.signing_key()

    async def deliver_due(self) -> int:
        """POST every due logout once; return how many the apps accepted."""
        now = self._clock.now()
        lease = now + timedelta(seconds=max(30.0, self._timeout * 3))
        due = await self._outbox.claim_due(now, lease, limit=BATCH)
        if not due:
            return 0
        async with httpx.AsyncClient(
            timeout=self._timeout, transport=self._transport, follow_redirects=False
        ) as http:
            return await self._delivery.each(
                due,
                lambda logout: self._send(http, logout),
                describe=lambda logout: (
                    f"back-channel logout {logout.id} to client {logout.client_id}"
                ),
            )

    async def _send(self, http: httpx.AsyncClient, logout: PendingLogout) -> None:
        client = await self._clients.get(logout.client_id)
        alg = client.id_token_signed_response_alg if client is not None else "RS256"
        response = await http.post(
            logout.uri,
            data={"logout_token": self.logout_token(logout, alg)},
            headers={"Cache-Control": "no-store"},
        )
        # Section 2.8: 200 OK on success (204 is taken as success too).
        if response.status_code not in (200, 204):
            raise DeliveryFailed(f"HTTP {response.status_code}")

    async def _run(self) -> None:
        while True:
            await wait_for_wake(self._wake, self._poll)
            try:
                if self._clock.now() >= self._next_expiry_check:
                    self._next_expiry_check = self._clock.now() + EXPIRY_CHECK_EVERY
                    await self.end_expired()  # before delivering: its rows go out this round
                while await self.deliver_due() >= BATCH:
                    pass
                if self._clock.now() >= self._next_sweep:
                    self._next_sweep = self._clock.now() + SWEEP_EVERY
                    await self.sweep()
                    await self.after_sweep()
            except StoreUnavailable:
                log.warning("back-channel logout: the database is unavailable; will retry")
            except Exception:
                log.exception("back-channel logout round failed")

    async def sweep(self) -> int:
        """Forget logouts delivered more than a day ago."""
        return await self._outbox.clear_sent(self._clock.now() - timedelta(days=1))

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="watchword-backchannel-logout")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
