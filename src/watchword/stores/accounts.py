"""Store contracts for an account's life: mailed tokens and the mail outbox.

Adapters: ``stores/sql/accounts.py`` and ``stores/memory_accounts.py``. Every change that sends
mail writes its outbox rows in the same transaction as the change (a transactional outbox): a
crash between the change and the sending loses nothing, and no mail goes out for a change that
did not happen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from watchword.domain.account_tokens import AccountToken
from watchword.domain.audit import AuditEvent
from watchword.domain.mail import OutgoingMail
from watchword.domain.mfa import FactorReset, MfaChallenge, TotpFactor
from watchword.domain.sessions import Session
from watchword.domain.users import User
from watchword.stores.passkeys import PasskeyStore


class AccountTokenStore(Protocol):
    async def register(
        self,
        user: User,
        *,
        audit: Sequence[AuditEvent],
        token: AccountToken,
        mail: Sequence[OutgoingMail],
    ) -> User:
        """Insert the user, its verification token, the mail and the audit rows in one
        transaction; raise ``EmailTaken`` (writing nothing) if the address is in use."""
        ...

    async def issue(
        self, token: AccountToken, *, mail: Sequence[OutgoingMail], audit: Sequence[AuditEvent]
    ) -> None:
        """Supersede (mark used) the user's unused tokens of the same purpose, insert
        ``token``, its mail and the audit rows, in one transaction."""
        ...

    async def issue_nothing(
        self, token_hash: str, now: datetime, *, audit: Sequence[AuditEvent]
    ) -> None:
        """The same statements as ``issue`` with no effect but the audit rows: what a request
        for an unknown account costs, so its answer takes as long as a known one's."""
        ...

    async def get(self, token_hash: str) -> AccountToken | None: ...

    async def verify_email(
        self,
        token: AccountToken,
        now: datetime,
        *,
        origin: str,
        audit: Sequence[AuditEvent],
        mail: Sequence[OutgoingMail],
    ) -> User | None:
        """Use ``token`` (only if still unused and unexpired) and mark its address verified;
        a change-of-address token also makes it the account's address (``EmailTaken`` if
        another account took it meanwhile). Records a user change in the control feed. None
        (nothing written) if the token was already used or expired."""
        ...

    async def reset_password(
        self,
        token: AccountToken,
        password_hash: str,
        now: datetime,
        *,
        origin: str,
        revoke_reason: str,
        audit: Callable[[list[Session]], Sequence[AuditEvent]],
        mail: Sequence[OutgoingMail],
    ) -> tuple[User | None, list[Session]]:
        """Use ``token``, set the password hash, use every other reset token of the user,
        revoke every live session (recorded in the control feed) and write the mail and the
        audit rows, in one transaction. The address the link went to is verified by it.
        (None, []) with nothing written if the token was already used or expired."""
        ...

    async def queue(
        self, mail: Sequence[OutgoingMail], *, audit: Sequence[AuditEvent] = ()
    ) -> None:
        """Mail that goes with no other change (a notice), with its audit rows."""
        ...


class SessionAuthStore(Protocol):
    """When and how a session last proved its user (RFC 8176 ``amr`` values)."""

    async def get(self, session_id: str) -> tuple[datetime, list[str]] | None:
        """None: never re-proved since the sign-in that made the session."""
        ...

    async def record(
        self,
        session_id: str,
        auth_time: datetime,
        amr: Sequence[str],
        *,
        audit: Sequence[AuditEvent] = (),
    ) -> None:
        """Insert or replace, with the audit rows, in one transaction."""
        ...


class MfaStore(Protocol):
    """Second factors: a TOTP secret (sealed) per user, its recovery codes (SHA-256) and the
    sign-in challenges waiting for a second factor (SHA-256). Every ``use_*`` is one
    conditional update, so two concurrent uses of one value cannot both succeed."""

    async def get_totp(self, user_id: str) -> TotpFactor | None: ...

    async def put_pending(self, factor: TotpFactor, *, audit: Sequence[AuditEvent] = ()) -> bool:
        """Replace the user's unconfirmed secret with ``factor``; False (nothing written) when
        a confirmed one is on."""
        ...

    async def confirm(
        self,
        user_id: str,
        step: int,
        code_hashes: Sequence[str],
        now: datetime,
        *,
        audit: Sequence[AuditEvent] = (),
    ) -> bool:
        """Turn the pending secret on (its ``last_step`` = ``step``) and replace the recovery
        codes, in one transaction; False (nothing written) when there is no pending secret."""
        ...

    async def use_step(self, user_id: str, step: int) -> bool:
        """Record ``step`` as used if it is later than the last used one (and the factor is
        on): a code is accepted once."""
        ...

    async def remove(self, user_id: str, *, audit: Sequence[AuditEvent] = ()) -> bool:
        """Delete the secret and the recovery codes; False when there was no confirmed one."""
        ...

    async def reset(
        self,
        user_id: str,
        now: datetime,
        *,
        origin: str,
        revoke_reason: str,
        audit: Callable[[FactorReset], Sequence[AuditEvent]],
        mail: Sequence[OutgoingMail],
    ) -> FactorReset:
        """An administrator's reset: delete the TOTP secret (confirmed or pending), the
        recovery codes and the passkeys, revoke every live session (recorded in the control
        feed; a session's refresh family ends with it), and write the mail and the audit rows,
        in one transaction: all of it or nothing."""
        ...

    async def replace_codes(
        self,
        user_id: str,
        code_hashes: Sequence[str],
        now: datetime,
        *,
        audit: Sequence[AuditEvent] = (),
    ) -> None: ...

    async def use_recovery_code(
        self, user_id: str, code_hash: str, now: datetime, *, audit: Sequence[AuditEvent] = ()
    ) -> bool:
        """Mark the user's unused code with this digest used; False if there is none."""
        ...

    async def unused_codes(self, user_id: str) -> int: ...

    async def create_challenge(self, challenge: MfaChallenge) -> None:
        """Insert it (and drop the user's expired ones)."""
        ...

    async def get_challenge(self, challenge_hash: str) -> MfaChallenge | None: ...

    async def use_challenge(self, challenge_hash: str, now: datetime) -> bool:
        """Mark it used if it is unused and unexpired at ``now``."""
        ...


class MailOutbox(Protocol):
    async def claim_due(
        self, now: datetime, lease_until: datetime, *, limit: int
    ) -> list[OutgoingMail]:
        """Unsent rows due at ``now``, each moved to ``lease_until`` by a conditional update so
        that two senders (two nodes) never both take one row. Oldest first."""
        ...

    async def mark_sent(self, mail_id: str, now: datetime) -> None: ...

    async def mark_failed(
        self, mail_id: str, *, attempts: int, next_attempt_at: datetime, error: str
    ) -> None: ...

    async def get(self, mail_id: str) -> OutgoingMail | None:
        """By id, or by a unique id prefix of at least 6 characters."""
        ...

    async def page(self, *, limit: int = 50, unsent_only: bool = False) -> list[OutgoingMail]:
        """Newest first."""
        ...


class AccountStores(Protocol):
    @property
    def tokens(self) -> AccountTokenStore: ...

    @property
    def outbox(self) -> MailOutbox: ...

    @property
    def session_auth(self) -> SessionAuthStore: ...

    @property
    def mfa(self) -> MfaStore: ...

    @property
    def passkeys(self) -> PasskeyStore: ...


def account_stores_for(db: object) -> AccountStores:
    """The account-lifecycle stores on the same backend as ``db``."""
    from watchword.stores.memory import MemoryDatabase

    if isinstance(db, MemoryDatabase):
        from watchword.stores.memory_accounts import MemoryAccountStores

        return MemoryAccountStores(db)
    engine = getattr(db, "engine", None)  # SqlDatabase, or a cache layer in front of it
    if engine is not None:
        from watchword.stores.sql.accounts import SqlAccountStores

        return SqlAccountStores(engine)
    raise TypeError(f"no account stores for {type(db).__name__}")
