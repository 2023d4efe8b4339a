"""Accounts: registration, sign-in, password changes and administration."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from watchword.domain.audit import AuditEvent, AuditType
from watchword.domain.clock import Clock, Randomness
from watchword.domain.errors import (
    AccountDisabled,
    EmailNotVerified,
    InvalidCredentials,
    InvalidEmail,
    NotFound,
    RateLimited,
    RegistrationClosed,
)
from watchword.domain.passwords import PasswordHasher, PasswordPolicy
from watchword.domain.principal import Principal
from watchword.domain.sessions import Session
from watchword.domain.users import User, check_label, normalize_email, validate_roles
from watchword.services.audit import Auditor
from watchword.services.context import RequestContext
from watchword.services.ratelimit import LoginThrottle
from watchword.services.sessions import NewSession, SessionService
from watchword.stores.base import Database

MAX_DEVICE_NAME = 100
# The lowest priority that still runs: on a core the event loop keeps busy, hashing gets
# about 1.5% of it (nice 10: about 10%), so each of its slices holds requests up less often.
# Measured with 50 sign-ins at once beside wrk: /v1/me's p99 storm/idle 1.47 and 1.47 against
# 1.74 and 1.88 at nice 10, for about a fifth fewer sign-ins done meanwhile. SCHED_IDLE would
# starve sign-ins outright while the loop is busy.
HASH_THREAD_NICENESS = 19


@dataclass(frozen=True, slots=True)
class PasswordChanged:
    user: User
    revoked: list[Session]  # the account's other sessions, ended
    session: NewSession | None  # what continues the caller's session, with a new secret


@dataclass(frozen=True, slots=True)
class SignIn:
    user: User
    new: NewSession

    @property
    def session(self) -> Session:
        return self.new.session


def _yield_to_requests() -> None:
    """Lower this hashing thread's priority (Linux schedules threads one by one)."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASH_THREAD_NICENESS)


@dataclass(frozen=True, slots=True)
class SecondFactorNeeded:
    """The password was right, a second factor is on: no session until it is given."""

    user: User
    challenge: str
    methods: tuple[str, ...]


class AccountService:
    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        randomness: Randomness,
        hasher: PasswordHasher,
        password_policy: PasswordPolicy,
        sessions: SessionService,
        throttle: LoginThrottle,
        auditor: Auditor,
        open_registration: bool,
        hashing_concurrency: int,
    ) -> None:
        self._db = db
        self._clock = clock
        self._random = randomness
        self._hasher = hasher
        self.password_policy = password_policy
        self._sessions = sessions
        self._throttle = throttle
        self._auditor = auditor
        self.open_registration = open_registration
        # Hashing is ~25 ms of CPU: run it in threads of its own, a bounded number at a time,
        # so a login storm queues up instead of stalling the event loop, at a lower scheduling
        # priority, so on a busy core the requests of everyone else go first.
        self._hash_pool = ThreadPoolExecutor(
            max_workers=hashing_concurrency,
            thread_name_prefix="watchword-hash",
            initializer=_yield_to_requests,
        )
        # Account lifecycle: registration writes the verification mail with the user, and
        # sign-in may wait for a verified address.
        self.registration_writer: (
            Callable[[User, list[AuditEvent], RequestContext], Awaitable[None]] | None
        ) = None
        self.require_verified_email = False
        # Second factors: with one on, a correct password yields a challenge, not a session.
        self.second_factor: (
            Callable[[User, str, str | None, RequestContext], Awaitable[SecondFactorNeeded | None]]
            | None
        ) = None

    async def hash_password(self, password: str) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._hash_pool, self._hasher.hash, password)

    async def verify_password(self, password_hash: str | None, password: str) -> bool:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._hash_pool, self._hasher.verify, password_hash, password
        )

    # -- registration ---------------------------------------------------------------------

    async def register(
        self,
        *,
        email: str,
        password: str,
        ctx: RequestContext,
        first_name: str | None = None,
        last_name: str | None = None,
        roles: Sequence[str] = (),
        self_service: bool = True,
    ) -> User:
        if self_service and not self.open_registration:
            raise RegistrationClosed()
        normalized = normalize_email(email)
        self.password_policy.check(password, email=normalized)
        check_label(first_name, "first_name")
        check_label(last_name, "last_name")
        now = self._clock.now()
        user = User(
            id=self._random.new_id(),
            email=normalized,
            password_hash=await self.hash_password(password),
            first_name=first_name,
            last_name=last_name,
            roles=validate_roles(list(roles)),
            created_at=now,
            updated_at=now,
        )
        registered = self._auditor.event(
            AuditType.USER_REGISTERED, ctx, user_id=user.id, self_service=self_service
        )
        if self.registration_writer is not None:
            await self.registration_writer(user, [registered], ctx)
        else:
            await self._db.users.create(user, audit=[registered])
        return user

    # -- sign-in --------------------------------------------------------------------------

    async def check_password(self, email: str, password: str, ctx: RequestContext) -> User:
        """Verify credentials with throttling and auditing; the one place sign-in happens.

        An unknown email and a wrong password take the same time and raise the same error.
        """
        try:
            normalized = normalize_email(email)
        except InvalidEmail:
            normalized = email.strip().lower()[:254]
        try:
            await self._throttle.check(account=normalized, ip=ctx.ip)
        except RateLimited:
            await self._auditor.record(AuditType.LOGIN_RATE_LIMITED, ctx, email=normalized)
            raise
        user = await self._db.users.get_by_email(normalized)
        ok = await self.verify_password(user.password_hash if user else None, password)
        if user is None or not ok:
            await self._throttle.failed(account=normalized)
            await self._auditor.record(
                AuditType.LOGIN_FAILED,
                ctx,
                user_id=user.id if user else None,
                email=normalized,
                reason="bad_password" if user else "unknown_email",
            )
            raise InvalidCredentials()
        if user.disabled:
            await self._auditor.record(
                AuditType.LOGIN_FAILED, ctx, user_id=user.id, reason="disabled"
            )
            raise AccountDisabled()
        if self.require_verified_email and user.email_verified_at is None:
            await self._auditor.record(
                AuditType.LOGIN_FAILED, ctx, user_id=user.id, reason="email_not_verified"
            )
            raise EmailNotVerified()
        if self._hasher.needs_rehash(user.password_hash):
            rehashed = await self.hash_password(password)
            user = (
                await self._db.users.update(
                    user.id, {"password_hash": rehashed}, self._clock.now(), origin=self._origin
                )
                or user
            )
        return user

    async def login(
        self,
        *,
        email: str,
        password: str,
        ctx: RequestContext,
        device_name: str | None = None,
        kind: str = "cookie",
        with_secret: bool = True,
        session_id: str | None = None,
    ) -> SignIn | SecondFactorNeeded:
        check_label(device_name, "device_name", MAX_DEVICE_NAME)
        user = await self.check_password(email, password, ctx)
        if self.second_factor is not None:
            pending = await self.second_factor(user, kind, device_name, ctx)
            if pending is not None:
                return pending
        return await self.open_session(
            user,
            ctx,
            kind=kind,
            device_name=device_name,
            with_secret=with_secret,
            session_id=session_id,
        )

    async def open_session(
        self,
        user: User,
        ctx: RequestContext,
        *,
        kind: str,
        device_name: str | None,
        with_secret: bool,
        session_id: str | None = None,
        amr: Sequence[str] | None = None,
        **audit_extra: Any,
    ) -> SignIn:
        """The session of a completed sign-in (the password, and a second factor if on).
        ``amr``: how it was proved, when more than a password, written with the session."""
        session_id = session_id or self._random.new_id()
        details: dict[str, Any] = dict(audit_extra)
        if amr is not None:
            details["amr"] = list(amr)
        # The session, its audit row and its amr row are written in one transaction.
        succeeded = self._auditor.event(
            AuditType.LOGIN_SUCCEEDED,
            ctx,
            user_id=user.id,
            session_id=session_id,
            kind=kind,
            **details,
        )
        new = await self._sessions.create(
            user,
            ctx,
            kind=kind,
            device_name=device_name,
            with_secret=with_secret,
            session_id=session_id,
            audit=[succeeded],
            amr=amr,
        )
        return SignIn(user=user, new=new)

    @property
    def _origin(self) -> str:
        return self._sessions.node_id

    # -- the signed-in user ---------------------------------------------------------------

    async def change_password(
        self, principal: Principal, *, current: str, new: str, ctx: RequestContext
    ) -> PasswordChanged:
        """Set a new password and re-key: every session of the account ends (in the same
        transaction as the new hash), and the session that made the change continues as a
        new session with a new secret (Django's ``cycle_key``), so a copy of its old cookie
        or refresh token taken before the change opens nothing."""
        assert principal.user_id is not None
        user = await self._db.users.get(principal.user_id)
        if user is None:
            raise NotFound("No such user.")
        # The current password is a password guess like a sign-in: a stolen cookie must not
        # become an unthrottled oracle for it.
        await self._throttle.check(account=user.email, ip=ctx.ip)
        if not await self.verify_password(user.password_hash, current):
            await self._throttle.failed(account=user.email)
            await self._auditor.record(
                AuditType.LOGIN_FAILED,
                ctx,
                user_id=user.id,
                session_id=principal.session_id,
                reason="password_change",
            )
            raise InvalidCredentials("The current password is incorrect.")
        self.password_policy.check(new, email=user.email)
        new_hash = await self.hash_password(new)

        def audit(revoked: list[Session]) -> list[AuditEvent]:
            return [
                self._auditor.event(
                    AuditType.PASSWORD_CHANGED,
                    ctx,
                    user_id=user.id,
                    session_id=principal.session_id,
                    revoked=len(revoked),
                    sessions=[s.id for s in revoked],
                )
            ]

        # One transaction: the new hash, every other session revoked, and the audit row.
        changed, revoked = await self._db.users.change_password(
            user.id,
            new_hash,
            self._clock.now(),
            origin=self._origin,
            keep_session_id=None,
            audit=audit,
        )
        if changed is None:
            raise NotFound("No such user.")
        await self._sessions.after_revoke(revoked)
        mine = next((s for s in revoked if s.id == principal.session_id), None)
        others = [s for s in revoked if s.id != principal.session_id]
        replacement = None
        if mine is not None:
            replacement = await self._sessions.create(
                changed,
                ctx,
                kind=mine.kind,
                device_name=mine.device_name,
                with_secret=mine.secret_hash is not None,
            )
        return PasswordChanged(user=changed, revoked=others, session=replacement)

    async def events_for(
        self, user_id: str, *, limit: int, before_id: int | None
    ) -> list[AuditEvent]:
        return await self._db.audit.for_user(user_id, limit=limit, before_id=before_id)

    # -- administration -------------------------------------------------------------------

    async def get_user(self, user_id: str) -> User:
        user = await self._db.users.get(user_id)
        if user is None:
            raise NotFound("No such user.")
        return user

    async def find_user(self, email: str) -> User:
        user = await self._db.users.get_by_email(normalize_email(email))
        if user is None:
            raise NotFound("No user with this email address.")
        return user

    async def find_user_or_none(self, normalized_email: str) -> User | None:
        return await self._db.users.get_by_email(normalized_email)

    async def list_users(self, *, limit: int, offset: int) -> list[User]:
        return await self._db.users.page(limit=limit, offset=offset)

    async def set_roles(
        self, user_id: str, roles: Sequence[str], ctx: RequestContext, *, actor_id: str | None
    ) -> User:
        cleaned = validate_roles(list(roles))
        user = await self._db.users.update(
            user_id, {"roles": cleaned}, self._clock.now(), origin=self._origin
        )
        if user is None:
            raise NotFound("No such user.")
        self._sessions.cache.drop_user(user_id)
        await self._sessions.announce_user_changed(user_id, disabled=user.disabled)
        await self._auditor.record(
            AuditType.USER_UPDATED, ctx, user_id=user_id, actor_id=actor_id, roles=list(cleaned)
        )
        return user

    async def set_disabled(
        self,
        user_id: str,
        disabled: bool,
        ctx: RequestContext,
        *,
        actor_id: str | None,
        roles: Sequence[str] | None = None,
    ) -> tuple[User, list[Session]]:
        """Disable or enable (and set ``roles`` in the same transaction, when given)."""
        cleaned = validate_roles(list(roles)) if roles is not None else None
        extra: dict[str, Any] = {"roles": list(cleaned)} if cleaned is not None else {}

        def audit(revoked: list[Session]) -> list[AuditEvent]:
            return [
                self._auditor.event(
                    AuditType.USER_DISABLED if disabled else AuditType.USER_UPDATED,
                    ctx,
                    user_id=user_id,
                    actor_id=actor_id,
                    disabled=disabled,
                    revoked=len(revoked),
                    **extra,
                )
            ]

        user, revoked = await self._db.users.set_disabled(
            user_id,
            disabled,
            self._clock.now(),
            origin=self._origin,
            changes={"roles": cleaned} if cleaned is not None else None,
            audit=audit,
        )
        if user is None:
            raise NotFound("No such user.")
        self._sessions.cache.drop_user(user_id)
        await self._sessions.after_revoke(revoked)
        await self._sessions.announce_user_changed(user_id, disabled=disabled)
        return user, revoked

    async def set_password(
        self, user_id: str, password: str, ctx: RequestContext, *, actor_id: str | None
    ) -> list[Session]:
        """An operator sets the password: every session of the user ends with the old one."""
        user = await self.get_user(user_id)
        self.password_policy.check(password, email=user.email)
        new_hash = await self.hash_password(password)

        def audit(revoked: list[Session]) -> list[AuditEvent]:
            return [
                self._auditor.event(
                    AuditType.PASSWORD_CHANGED,
                    ctx,
                    user_id=user.id,
                    actor_id=actor_id,
                    revoked=len(revoked),
                    sessions=[s.id for s in revoked],
                )
            ]

        changed, revoked = await self._db.users.change_password(
            user.id,
            new_hash,
            self._clock.now(),
            origin=self._origin,
            keep_session_id=None,
            audit=audit,
        )
        if changed is None:
            raise NotFound("No such user.")
        self._sessions.cache.drop_user(user.id)
        await self._sessions.after_revoke(revoked)
        return revoked

    async def delete_user(
        self, user_id: str, ctx: RequestContext, *, actor_id: str | None, **details: Any
    ) -> list[Session]:
        """Delete the account; its sessions end first, pushed to every node. The caller
        revokes the machine credentials the user owns before this."""
        revoked = await self._db.users.delete(user_id, self._clock.now(), origin=self._origin)
        await self._sessions.after_revoke(revoked)
        self._sessions.cache.drop_user(user_id)
        await self._sessions.announce_user_changed(user_id, disabled=True)
        await self._auditor.record(
            AuditType.USER_DELETED,
            ctx,
            user_id=user_id,
            actor_id=actor_id,
            revoked=len(revoked),
            **details,
        )
        return revoked
