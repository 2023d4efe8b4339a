"""The store contracts. Every adapter (memory, SQL, later Redis caches) keeps these names.

Write semantics, as in Django's session backends: ``create`` is insert-only and raises on a
collision; updates never resurrect a revoked or deleted row.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from watchword.domain.audit import AuditEvent
from watchword.domain.sessions import Session
from watchword.domain.users import User


@dataclass(frozen=True, slots=True)
class ControlRecord:
    """One row of the durable change feed (revocations, user changes, key changes)."""

    id: int
    at: datetime
    origin: str
    payload: dict[str, Any]


class UserStore(Protocol):
    async def create(self, user: User, *, audit: Sequence[AuditEvent] = ()) -> User:
        """Insert a new user and the ``audit`` rows, in one transaction; raise ``EmailTaken``
        if the email is in use (then nothing is written)."""
        ...

    async def get(self, user_id: str) -> User | None: ...

    async def get_by_email(self, email: str) -> User | None:
        """``email`` is already normalised."""
        ...

    async def page(self, *, limit: int = 100, offset: int = 0) -> list[User]:
        """Oldest first (creation order)."""
        ...

    async def count(self) -> int: ...

    async def update(
        self, user_id: str, changes: Mapping[str, Any], now: datetime, *, origin: str
    ) -> User | None:
        """Apply ``changes`` (columns of ``User``), bump ``updated_at`` and record a user
        change in the control feed (roles change scopes); None if the user is gone."""
        ...

    async def set_disabled(
        self,
        user_id: str,
        disabled: bool,
        now: datetime,
        *,
        origin: str,
        changes: Mapping[str, Any] | None = None,
        audit: Callable[[list[Session]], Sequence[AuditEvent]] | None = None,
    ) -> tuple[User | None, list[Session]]:
        """Disable or enable, applying ``changes`` (columns of ``User``, such as roles) in the
        same step; disabling revokes every live session in the same transaction and records
        the revocations and the user change in the control feed, with the audit rows
        ``audit`` builds from the revoked sessions."""
        ...

    async def change_password(
        self,
        user_id: str,
        password_hash: str,
        now: datetime,
        *,
        origin: str,
        keep_session_id: str | None,
        audit: Callable[[list[Session]], Sequence[AuditEvent]],
    ) -> tuple[User | None, list[Session]]:
        """Replace the password hash and revoke every live session of the user but
        ``keep_session_id``, in one transaction with the revocations in the control feed and
        the audit rows ``audit`` builds from the revoked sessions: no window in which the new
        password is set and a session of the old one still lives. (None, []) if the user is
        gone, and then nothing is written."""
        ...

    async def delete(self, user_id: str, now: datetime, *, origin: str) -> list[Session]:
        """Delete the user and its sessions; return the sessions that were live."""
        ...


class SessionStore(Protocol):
    async def create(
        self,
        session: Session,
        *,
        limit: int,
        policy: str,
        grace_seconds: int,
        origin: str,
        audit: Sequence[AuditEvent] = (),
        amr: Sequence[str] | None = None,
    ) -> list[Session]:
        """Insert ``session`` unless the user would exceed ``limit`` live sessions (0 = no
        limit). Policy ``reject`` raises ``SessionLimitReached``; ``evict-oldest`` revokes the
        oldest and returns them. Atomic under concurrent logins of the same user, on every
        node: never more than ``limit`` live sessions. The ``audit`` rows (the sign-in) are
        written in the same transaction: no session without its audit row, nor the reverse.
        ``amr``: how the sign-in was proved when it was more than a password (RFC 8176); its
        row (``auth_time`` = the session's creation) is written in the same transaction, so
        no session ever claims less than its sign-in proved, even for a moment."""
        ...

    async def get(self, session_id: str) -> Session | None: ...

    async def get_by_secret_hash(self, secret_hash: str) -> Session | None: ...

    async def list_live(self, user_id: str, now: datetime) -> list[Session]:
        """Unrevoked sessions whose absolute expiry is in the future, newest first."""
        ...

    async def list_all_live(self, now: datetime, *, limit: int) -> list[Session]:
        """``list_live`` across every user: at most ``limit``, newest first."""
        ...

    async def touch(self, last_seen: Mapping[str, datetime]) -> None:
        """Move ``last_seen_at`` forward for many sessions at once (coalesced writes).
        Never moves it back and never touches a revoked session."""
        ...

    async def revoke(
        self,
        session_id: str,
        reason: str,
        now: datetime,
        *,
        origin: str,
        audit: Sequence[AuditEvent] = (),
        owner_id: str | None = None,
    ) -> Session | None:
        """Revoke one live session; None if unknown, already revoked, or (with ``owner_id``)
        another user's. The revocation is in the control feed when this returns, and
        ``audit`` written with it (both or neither)."""
        ...

    async def revoke_all(
        self,
        user_id: str,
        reason: str,
        now: datetime,
        *,
        origin: str,
        except_session_id: str | None = None,
    ) -> list[Session]:
        """Revoke every live session of the user but one; return those revoked."""
        ...

    async def revoke_kind(
        self, kind: str, reason: str, now: datetime, *, origin: str
    ) -> list[Session]:
        """Revoke every live session of one ``kind`` (the /api/v1 surface's in-memory sessions,
        which a restart ends); return those revoked, recorded in the control feed."""
        ...

    async def clear_expired(self, now: datetime, *, keep_revoked_for: int) -> int:
        """Delete sessions past their absolute expiry, and revoked ones older than
        ``keep_revoked_for`` seconds. Return how many."""
        ...


class AuditStore(Protocol):
    async def append(self, event: AuditEvent) -> None: ...

    async def for_user(
        self, user_id: str, *, limit: int = 50, before_id: int | None = None
    ) -> list[AuditEvent]:
        """Newest first."""
        ...

    async def tail(self, *, limit: int = 50, after_id: int | None = None) -> list[AuditEvent]:
        """Oldest first after ``after_id`` (or the last ``limit`` events)."""
        ...


# Rows a ``ControlFeed.read_after`` returns at most: a shorter page is the end of the feed,
# so a reader stops there instead of asking again for an empty one.
CONTROL_PAGE = 500


class ControlFeed(Protocol):
    async def append(
        self, payloads: Sequence[dict[str, Any]], now: datetime, *, origin: str
    ) -> list[int]:
        """Record control events durably; return their ids in order."""
        ...

    async def read_after(
        self, after_id: int, *, limit: int = CONTROL_PAGE
    ) -> list[ControlRecord]: ...

    async def last_id(self) -> int: ...

    async def clear_older_than(self, cutoff: datetime) -> int: ...


async def read_to_end(feed: ControlFeed, after_id: int) -> AsyncIterator[ControlRecord]:
    """Every record after ``after_id``, oldest first, page by page up to the first short one."""
    while True:
        records = await feed.read_after(after_id)
        for record in records:
            after_id = record.id
            yield record
        if len(records) < CONTROL_PAGE:
            return


class Database(Protocol):
    """The stores of one backend, and its lifecycle."""

    @property
    def users(self) -> UserStore: ...

    @property
    def sessions(self) -> SessionStore: ...

    @property
    def audit(self) -> AuditStore: ...

    @property
    def control(self) -> ControlFeed: ...

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` when the backend cannot answer."""
        ...

    async def close(self) -> None: ...
