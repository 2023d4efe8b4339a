"""Writes the audit trail: one line per security-relevant action, never a secret."""

from __future__ import annotations

from typing import Any

from watchword.domain.audit import AuditEvent
from watchword.domain.clock import Clock
from watchword.services.context import RequestContext
from watchword.stores.base import AuditStore


class Auditor:
    def __init__(self, store: AuditStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def record(
        self,
        event_type: str,
        ctx: RequestContext,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        actor_id: str | None = None,
        **details: Any,
    ) -> None:
        await self._store.append(
            self.event(
                event_type,
                ctx,
                user_id=user_id,
                session_id=session_id,
                actor_id=actor_id,
                **details,
            )
        )

    def event(
        self,
        event_type: str,
        ctx: RequestContext,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        actor_id: str | None = None,
        **details: Any,
    ) -> AuditEvent:
        """The event without writing it: for a store that writes it with its own change."""
        return AuditEvent(
            type=event_type,
            at=self._clock.now(),
            user_id=user_id,
            session_id=session_id,
            ip=ctx.ip,
            user_agent=ctx.user_agent,
            actor_id=actor_id,
            details=details,
        )
