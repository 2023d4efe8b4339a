"""``SessionAuth``: a uuid4 session id in the ``SESSION_NAME`` cookie (0x02 tasks 1-8).

As in the exercise, the ids this process issued live in the class-level
``user_id_by_session_id``, so a restart forgets them. Each is also a real Watchword session
(kind ``compat-memory``, only the SHA-256 of the id stored), so it shows in
``GET /v1/sessions`` and ``watchword sessions list`` and revoking it there ends it here. Every
server start revokes the rows of such sessions left by the previous process.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar

from starlette.requests import HTTPConnection

from watchword.domain.audit import AuditType
from watchword.domain.errors import InvalidCredential, NotFound
from watchword.domain.principal import Principal
from watchword.domain.sessions import RevokeReason, Session
from watchword.domain.users import User
from watchword.services.context import RequestContext
from watchword.web.compat_v1.auth import Auth, plausible_id, request_context
from watchword.web.compat_v1.settings import NO_EXPIRY

MEMORY_KIND = "compat-memory"
DB_KIND = "compat"
COMPAT_CONTEXT = RequestContext(ip=None, user_agent=None)


class SessionAuth(Auth):
    """Sessions kept in this process's memory; no expiry."""

    user_id_by_session_id: ClassVar[dict[str, Any]] = {}
    session_kind: ClassVar[str] = MEMORY_KIND

    def session_lifetime(self) -> timedelta:
        return NO_EXPIRY

    async def create_session(
        self, user_id: object = None, *, ctx: RequestContext = COMPAT_CONTEXT, login: bool = False
    ) -> str | None:
        """A new session id (uuid4 text) for ``user_id``; None for no such user. With
        ``login``, the sign-in's audit row is written in the session's transaction."""
        if not isinstance(user_id, str) or not plausible_id(user_id):
            return None
        user = await self.container.db.users.get(user_id)
        if user is None:
            return None
        session_id = self.container.randomness.new_id()
        row_id = self.container.randomness.new_id()
        audit = (
            [
                self.container.auditor.event(
                    AuditType.LOGIN_SUCCEEDED,
                    ctx,
                    user_id=user.id,
                    session_id=row_id,
                    kind=self.session_kind,
                    surface="api/v1",
                )
            ]
            if login
            else []
        )
        new = await self.container.sessions.create(
            user,
            ctx,
            kind=self.session_kind,
            session_id=row_id,
            secret=session_id,
            lifetime=self.session_lifetime(),
            audit=audit,
        )
        self.remember(session_id, new.session)
        return session_id

    def remember(self, session_id: str, session: Session) -> None:
        self.user_id_by_session_id[session_id] = session.user_id

    def known_user_id(self, session_id: str) -> str | None:
        """The exercise's lookup: the user id this process filed under ``session_id``."""
        value = self.user_id_by_session_id.get(session_id)
        return value if isinstance(value, str) else None

    async def user_id_for_session_id(self, session_id: object = None) -> str | None:
        principal = await self.session_principal(session_id)
        return principal.user_id if principal is not None else None

    async def session_principal(self, session_id: object) -> Principal | None:
        """The live Watchword session behind ``session_id``, if this strategy knows it."""
        if not isinstance(session_id, str):
            return None
        user_id = self.known_user_id(session_id)
        if user_id is None:
            return None
        principal = await self.watchword_session(session_id)
        if principal is None or principal.user_id != user_id:
            # Revoked, expired or deleted elsewhere: this process forgets it too.
            self.user_id_by_session_id.pop(session_id, None)
            return None
        return principal

    async def watchword_session(self, session_id: str) -> Principal | None:
        """The session row checked by Watchword (revocation, disabled user, expiry)."""
        try:
            principal = await self.container.sessions.authenticate_secret(session_id)
        except InvalidCredential:
            return None
        if principal.session is None or principal.session.kind != self.session_kind:
            return None
        return principal

    async def current_user(self, request: HTTPConnection | None = None) -> User | None:
        principal = await self.session_principal(self.session_cookie(request))
        return principal.user if principal is not None else None

    async def destroy_session(self, request: HTTPConnection | None = None) -> bool:
        """Log out: forget the id and revoke its Watchword session. False when there is no
        request, no cookie, or no live session behind it."""
        if request is None:
            return False
        session_id = self.session_cookie(request)
        if session_id is None:
            return False
        principal = await self.session_principal(session_id)
        if principal is None or principal.session_id is None:
            return False
        self.user_id_by_session_id.pop(session_id, None)
        try:
            await self.container.sessions.revoke(
                principal.session_id,
                RevokeReason.LOGOUT,
                request_context(request, self.container),
                owner_id=principal.user_id,
                actor_id=principal.user_id,
            )
        except NotFound:  # revoked by someone else in the meantime
            return False
        return True
