"""``SessionExpAuth``: sessions that end ``SESSION_DURATION`` seconds after creation (0x02 9).

Not sliding. 0, negative, missing or not an integer means no expiry. A session created at
``t`` is still valid at exactly ``t + SESSION_DURATION`` and expired one microsecond later;
its Watchword row ends at the same instant, so it leaves ``GET /v1/sessions`` then too.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from watchword.domain.sessions import Session
from watchword.web.compat_v1.session_auth import SessionAuth
from watchword.web.compat_v1.settings import NO_EXPIRY, CompatSettings

if TYPE_CHECKING:
    from watchword.services.container import Container

ONE_TICK = timedelta(microseconds=1)


class SessionExpAuth(SessionAuth):
    """In-memory sessions with an absolute lifetime."""

    def __init__(self, container: Container, settings: CompatSettings) -> None:
        super().__init__(container, settings)
        self.session_duration = settings.session_duration

    def session_lifetime(self) -> timedelta:
        if self.session_duration <= 0:
            return NO_EXPIRY
        return min(timedelta(seconds=self.session_duration) + ONE_TICK, NO_EXPIRY)

    def remember(self, session_id: str, session: Session) -> None:
        self.user_id_by_session_id[session_id] = {
            "user_id": session.user_id,
            "created_at": session.created_at,
        }

    def expired(self, created_at: datetime) -> bool:
        """``created_at + SESSION_DURATION`` is before now (never, without a duration)."""
        if self.session_duration <= 0:
            return False
        return created_at + timedelta(seconds=self.session_duration) < self.container.clock.now()

    def known_user_id(self, session_id: str) -> str | None:
        entry = self.user_id_by_session_id.get(session_id)
        if not isinstance(entry, dict):
            return None
        user_id = entry.get("user_id")
        if not isinstance(user_id, str):
            return None
        if self.session_duration <= 0:
            return user_id
        created_at = entry.get("created_at")
        if not isinstance(created_at, datetime):
            return None
        if self.expired(created_at):
            # The exercise keeps expired entries; dropping them answers the same and keeps
            # this process's memory bounded by its live sessions.
            self.user_id_by_session_id.pop(session_id, None)
            return None
        return user_id
