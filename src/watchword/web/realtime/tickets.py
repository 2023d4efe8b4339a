"""Connection tickets: short-lived, single-use proofs of a credential, for browsers.

A browser cannot set headers on a WebSocket, and a token in a URL ends up in logs and history.
So an authenticated caller asks ``POST /v1/realtime/ticket`` for a ticket (a random value that
lives seconds and works once) and connects with ``?ticket=``. The store keeps only the ticket's
SHA-256 with what it grants; redeeming removes it, whether or not it has expired.

An implementation shared between nodes must make ``redeem`` atomic (Redis ``GETDEL``), so a
ticket cannot be used twice on two nodes.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from watchword.domain.clock import Clock, Randomness, sha256_hex
from watchword.domain.errors import RateLimited

TICKET_PREFIX = "wwt_"
TICKET_BYTES = 32
MAX_TICKET_LENGTH = 128


@dataclass(frozen=True, slots=True)
class TicketGrant:
    """What a ticket stands for: the principal that asked for it, as it was then."""

    user_id: str
    session_id: str | None
    scopes: frozenset[str]
    method: str
    credential_expires_at: datetime | None
    issued_at: datetime
    expires_at: datetime
    # The credential behind the ticket (an API key's id, a token's jti): the socket opened
    # with the ticket rests on it, and closes when it is revoked.
    credential_id: str | None = None


class TicketStore(Protocol):
    async def put(self, ticket_hash: str, grant: TicketGrant) -> None:
        """Store a grant under a new ticket's hash; raise ``RateLimited`` when full."""
        ...

    async def take(self, ticket_hash: str) -> TicketGrant | None:
        """Remove and return the grant (at most once across every node), or ``None``."""
        ...


class MemoryTicketStore:
    """See ``TicketStore``. Bounded: expired grants are pruned before refusing a new one."""

    def __init__(self, *, clock: Clock, max_tickets: int) -> None:
        self._clock = clock
        self._max = max_tickets
        self._grants: dict[str, TicketGrant] = {}

    def __len__(self) -> int:
        return len(self._grants)

    async def put(self, ticket_hash: str, grant: TicketGrant) -> None:
        if len(self._grants) >= self._max:
            now = self._clock.now()
            for key in [k for k, g in self._grants.items() if g.expires_at <= now]:
                del self._grants[key]
            if len(self._grants) >= self._max:
                raise RateLimited(1, "Too many connection tickets outstanding.")
        self._grants[ticket_hash] = grant

    async def take(self, ticket_hash: str) -> TicketGrant | None:
        return self._grants.pop(ticket_hash, None)


class Tickets:
    def __init__(
        self, *, store: TicketStore, clock: Clock, randomness: Randomness, ttl: float
    ) -> None:
        self._store = store
        self._clock = clock
        self._random = randomness
        self.ttl = timedelta(seconds=ttl)

    async def issue(
        self,
        *,
        user_id: str,
        session_id: str | None,
        scopes: frozenset[str],
        method: str,
        credential_expires_at: datetime | None,
        credential_id: str | None = None,
    ) -> tuple[str, TicketGrant]:
        now = self._clock.now()
        expires_at = now + self.ttl
        if credential_expires_at is not None:
            expires_at = min(expires_at, credential_expires_at)
        grant = TicketGrant(
            user_id=user_id,
            session_id=session_id,
            scopes=scopes,
            method=method,
            credential_expires_at=credential_expires_at,
            issued_at=now,
            expires_at=expires_at,
            credential_id=credential_id,
        )
        ticket = TICKET_PREFIX + self._random.token(TICKET_BYTES)
        await self._store.put(sha256_hex(ticket), grant)
        return ticket, grant

    async def redeem(self, ticket: str) -> TicketGrant | None:
        """The grant of a valid, unused, unexpired ticket; ``None`` for anything else."""
        if not looks_like_ticket(ticket):
            return None
        grant = await self._store.take(sha256_hex(ticket))
        if grant is None or self._clock.now() >= grant.expires_at:
            return None
        return grant


def looks_like_ticket(value: str) -> bool:
    return (
        0 < len(value) <= MAX_TICKET_LENGTH
        and value.isascii()
        and hmac.compare_digest(value[: len(TICKET_PREFIX)], TICKET_PREFIX)
    )


_: type[TicketStore] = MemoryTicketStore

__all__ = ["MemoryTicketStore", "TicketGrant", "TicketStore", "Tickets", "looks_like_ticket"]
