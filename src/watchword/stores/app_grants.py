"""Store contract for apps' grants and consents (OpenID Connect). Adapters:
``stores/sql/app_grants.py`` and ``stores/memory_app_grants.py``.

Single use is the store's job: of two redemptions of one code exactly one wins. Revoking a
grant marks it and its refresh tokens (state ``revoked``) in one transaction, so no token of
it can be redeemed afterwards; the caller revokes the access tokens it returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from watchword.domain.app_grants import AppConsent, AppGrant, PendingLogout
from watchword.domain.tokens import RefreshToken
from watchword.stores.tokens import KeyStore


class AppGrantStore(Protocol):
    async def create(self, grant: AppGrant) -> None:
        """Insert-only; the client, user and session must exist."""
        ...

    async def get(self, grant_id: str) -> AppGrant | None: ...

    async def get_by_code(self, code_hash: str) -> AppGrant | None: ...

    async def redeem(self, grant_id: str, now: datetime) -> bool:
        """Mark the code used if it is unused and the grant unrevoked; True for exactly one
        of several concurrent calls."""
        ...

    async def record_issued(
        self,
        grant_id: str,
        jti: str,
        expires_at: float,
        now: datetime,
        refresh: RefreshToken | None = None,
    ) -> bool:
        """Remember an access token issued under the grant (and insert ``refresh``, the
        first token of its family), unless the grant was revoked meanwhile: then False and
        nothing written. Expired entries are pruned on the way."""
        ...

    async def revoke(self, grant_id: str, now: datetime) -> AppGrant | None:
        """Revoke an unrevoked grant and its refresh tokens; None when already revoked."""
        ...

    async def for_user(self, user_id: str) -> list[AppGrant]:
        """Unrevoked, redeemed grants of the user on unrevoked sessions, newest first."""
        ...

    async def for_session(self, session_id: str) -> list[AppGrant]:
        """Redeemed grants that rode on the session (revoked or not)."""
        ...

    async def end_with_expired_sessions(
        self, now: datetime, idle_margin: timedelta, *, limit: int = 200
    ) -> list[AppGrant]:
        """Revoke the live grants (and their refresh tokens) of unrevoked sessions that have
        expired: past their absolute expiry, or past their stored idle expiry by more than
        ``idle_margin``. In the same transaction, queue one back-channel logout per app with
        a logout URI and session that has none queued yet. Returns the grants revoked (the
        caller revokes their live access tokens)."""
        ...

    async def clear_expired(self, code_before: datetime) -> int:
        """Delete grants whose code expired before ``code_before`` without being redeemed."""
        ...


class LogoutOutbox(Protocol):
    """Back-channel logouts to deliver. Rows are written by the session stores in the same
    transaction that ends a session (``stores/sql/database.py``, ``revoke_where``)."""

    def on_queued(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` each time a transaction of this node that queued logouts (a
        session ended) has committed."""
        ...

    async def claim_due(
        self, now: datetime, lease_until: datetime, *, limit: int
    ) -> list[PendingLogout]:
        """Unsent rows due at ``now``, each moved to ``lease_until`` by a conditional update
        so that two senders (two nodes) never both take one row. Oldest first."""
        ...

    async def mark_sent(self, logout_id: str, now: datetime) -> None: ...

    async def mark_failed(
        self, logout_id: str, *, attempts: int, next_attempt_at: datetime, error: str
    ) -> None: ...

    async def page(self, *, limit: int = 50, unsent_only: bool = False) -> list[PendingLogout]:
        """Newest first."""
        ...

    async def clear_sent(self, sent_before: datetime) -> int:
        """Delete rows delivered before ``sent_before`` (undelivered rows stay)."""
        ...


class AppConsentStore(Protocol):
    async def get(self, user_id: str, client_id: str) -> AppConsent | None: ...

    async def save(self, consent: AppConsent) -> None:
        """Insert or replace the user's consent for the client."""
        ...

    async def for_user(self, user_id: str) -> list[AppConsent]: ...

    async def delete(self, user_id: str, client_id: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class AppGrantStores:
    grants: AppGrantStore
    consents: AppConsentStore
    id_token_keys: KeyStore
    logout_outbox: LogoutOutbox


def app_grant_stores_for(db: object) -> AppGrantStores:
    """The OpenID Connect stores on the same backend as ``db`` (SQLite or PostgreSQL)."""
    engine = getattr(db, "engine", None)  # SqlDatabase, or a cache layer in front of it
    if engine is None:
        raise TypeError(f"no OpenID Connect stores for {type(db).__name__}")
    from watchword.stores.sql import tables
    from watchword.stores.sql.app_grants import (
        SqlAppConsentStore,
        SqlAppGrantStore,
        SqlLogoutOutbox,
    )
    from watchword.stores.sql.tokens import SqlKeyStore

    return AppGrantStores(
        grants=SqlAppGrantStore(engine),
        consents=SqlAppConsentStore(engine),
        id_token_keys=SqlKeyStore(engine, tables.id_token_keys),
        logout_outbox=SqlLogoutOutbox(engine),
    )
