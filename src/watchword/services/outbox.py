"""The delivery half of a transactional outbox, shared by mail and back-channel logout.

Each claimed row is tried once: a success marks it sent; a failure reschedules it with
exponential backoff and keeps the error on the row for the operator. Nothing is dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

from watchword.domain.clock import Clock
from watchword.domain.mail import retry_delay


class OutboxRow(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def attempts(self) -> int: ...


class DeliveryLedger(Protocol):
    """What an outbox store records about each attempt."""

    async def mark_sent(self, row_id: str, now: datetime, /) -> None: ...

    async def mark_failed(
        self, row_id: str, /, *, attempts: int, next_attempt_at: datetime, error: str
    ) -> None: ...


R = TypeVar("R", bound=OutboxRow)


@dataclass(frozen=True)
class Delivery:
    """How one outbox delivers: its store, its clock, its backoff and what counts as a
    failed attempt (anything else is a bug and propagates)."""

    ledger: DeliveryLedger
    clock: Clock
    retry_base: float
    retry_max: float
    failures: tuple[type[BaseException], ...]
    log: logging.Logger

    async def each(
        self,
        rows: Sequence[R],
        send: Callable[[R], Awaitable[None]],
        *,
        describe: Callable[[R], str],
        delivered: Callable[[R], Awaitable[None]] | None = None,
    ) -> int:
        """Try every row once, in order; return how many were delivered. ``delivered`` runs
        after each success (its own failure is logged, never counted against the row)."""
        sent = 0
        for row in rows:
            try:
                await send(row)
            except self.failures as exc:
                attempts = row.attempts + 1
                retry_at = self.clock.now() + retry_delay(
                    attempts, base=self.retry_base, maximum=self.retry_max
                )
                self.log.warning(
                    "%s: attempt %d failed (%s); next at %s",
                    describe(row),
                    attempts,
                    type(exc).__name__,
                    retry_at.isoformat(),
                )
                await self.ledger.mark_failed(
                    row.id, attempts=attempts, next_attempt_at=retry_at, error=str(exc) or repr(exc)
                )
                continue
            await self.ledger.mark_sent(row.id, self.clock.now())
            sent += 1
            if delivered is not None:
                try:
                    await delivered(row)
                except Exception:
                    self.log.exception("%s: delivered, but its follow-up failed", describe(row))
        return sent


__all__ = ["Delivery", "DeliveryLedger", "OutboxRow"]
