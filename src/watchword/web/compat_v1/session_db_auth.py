"""``SessionDBAuth``: ``SessionExpAuth`` persisted (0x02 task 10).

The exercise's ``UserSession`` record is the Watchword session row (kind ``compat``): it
survives a restart, expires by the same ``SESSION_DURATION`` rule on its ``created_at``, and
logout revokes it (Watchword keeps a revoked row a day for the audit trail, then deletes it).
"""

from __future__ import annotations

from typing import ClassVar

from watchword.domain.principal import Principal
from watchword.domain.sessions import Session
from watchword.web.compat_v1.session_auth import DB_KIND
from watchword.web.compat_v1.session_exp_auth import SessionExpAuth


class SessionDBAuth(SessionExpAuth):
    """Sessions in the database, not in this process."""

    session_kind: ClassVar[str] = DB_KIND

    def remember(self, session_id: str, session: Session) -> None:
        """The database row is the record: nothing to keep in memory."""

    async def session_principal(self, session_id: object) -> Principal | None:
        if not isinstance(session_id, str):
            return None
        principal = await self.watchword_session(session_id)
        if principal is None or principal.session is None:
            return None
        if self.expired(principal.session.created_at):
            return None
        return principal
