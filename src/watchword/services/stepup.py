"""Step-up: operations that change how an account signs in need a recent sign-in.

A session's ``auth_time`` is when its user last proved who they are (the sign-in that made
it, or a later ``POST /v1/auth/reauth``), with how (``amr``, RFC 8176).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from watchword.domain.audit import AuditType
from watchword.domain.clock import Clock, monotonic
from watchword.domain.errors import InvalidCredentials, InvalidInput, NotFound, ReauthRequired
from watchword.domain.principal import Principal
from watchword.domain.sessions import Session
from watchword.domain.users import User
from watchword.services.accounts import AccountService
from watchword.services.audit import Auditor
from watchword.services.context import RequestContext
from watchword.services.ratelimit import LoginThrottle
from watchword.services.single_flight import SingleFlight, refresh_age
from watchword.stores.accounts import SessionAuthStore
from watchword.stores.base import Database

PASSWORD = "pwd"  # RFC 8176
MULTI_FACTOR = "mfa"
SHOWN_MAX = 10_000


def claims_of(info: tuple[datetime, list[str]]) -> dict[str, Any]:
    auth_time, amr = info
    # acr: NIST SP 800-63B assurance levels, AAL2 once a second factor was used.
    return {
        "auth_time": int(auth_time.timestamp()),
        "amr": list(amr),
        "acr": "aal2" if MULTI_FACTOR in amr else "aal1",
    }


class StepUp:
    def __init__(
        self,
        *,
        store: SessionAuthStore,
        db: Database,
        accounts: AccountService,
        throttle: LoginThrottle,
        auditor: Auditor,
        clock: Clock,
        max_age: int,
        shown_ttl: float = 30.0,
        announce: Callable[[str | None, str, dict[str, Any]], Awaitable[None]],
    ) -> None:
        self._store = store
        self._db = db
        self._accounts = accounts
        self._throttle = throttle
        self._auditor = auditor
        self._clock = clock
        self.max_age = timedelta(seconds=max_age)
        self._announce = announce
        # session id -> (when read, (auth_time, amr), its claims): the claims are built once
        # per read, so /v1/me can reuse what it made of them until they change.
        self._shown: dict[str, tuple[float, tuple[datetime, list[str]], dict[str, Any]]] = {}
        self._shown_ttl = shown_ttl
        self._shown_due_age = refresh_age(shown_ttl)
        self._shown_loads: SingleFlight[tuple[datetime, list[str]] | None] = SingleFlight()
        # Second factors: (user, code, ctx, session_id) -> the amr of a step-up whose password
        # was right; raises when a second factor is on and the code is missing or wrong.
        self.second_factor: (
            Callable[[User, str | None, RequestContext, str | None], Awaitable[list[str]]] | None
        ) = None
        # Passkeys: (user, credential, ctx) -> the amr of a step-up made with one; raises
        # ``InvalidPasskey`` when it does not verify.
        self.passkey: (
            Callable[[User, Mapping[str, Any], RequestContext], Awaitable[list[str]]] | None
        ) = None

    async def auth_info(self, principal: Principal) -> tuple[datetime, list[str]] | None:
        """(auth_time, amr) of the principal's session; None without a session."""
        if principal.session_id is None:
            return None
        return await self.session_info(principal.session_id, principal.session)

    async def session_info(
        self, session_id: str, session: Session | None = None
    ) -> tuple[datetime, list[str]] | None:
        """Read from the store (never cached: the step-up check relies on it)."""
        read_at = monotonic()
        recorded = await self._store.get(session_id)
        if recorded is None:
            session = session or await self._db.sessions.get(session_id)
            if session is None:
                return None
            recorded = (session.created_at, [PASSWORD])
        shown = self._shown.get(session_id)
        if shown is not None and shown[0] > read_at:
            return recorded  # a step-up landed while this read ran: keep what it wrote
        self._shown[session_id] = (monotonic(), recorded, claims_of(recorded))
        if len(self._shown) > SHOWN_MAX:
            self._shown.pop(next(iter(self._shown)))
        return recorded

    def shown_cached(self, principal: Principal) -> dict[str, Any] | None:
        """``shown`` when its cache holds a fresh value (renewed in the background while in
        use), else None. Not a coroutine: on the hot path, a cache hit costs no coroutine."""
        session_id = principal.session_id
        if session_id is None:
            return {}
        cached = self._shown.get(session_id)
        if cached is not None:
            age = monotonic() - cached[0]
            if age < self._shown_ttl:
                if age >= self._shown_due_age:
                    self._shown_loads.refresh(session_id, lambda: self.auth_info(principal))
                return cached[2]
        return None

    async def shown(self, principal: Principal) -> dict[str, Any]:
        """``auth_time``, ``amr`` and ``acr`` for display (``/v1/me``): from a short-lived
        cache, so the hot path does not read the store on every call. The same dict is
        returned until the cached value is read again: callers must not change it."""
        fresh = self.shown_cached(principal)
        if fresh is not None:
            return fresh
        session_id = principal.session_id
        assert session_id is not None  # shown_cached answers {} without a session
        info = await self._shown_loads.run(session_id, lambda: self.auth_info(principal))
        if info is None:
            return {}
        cached = self._shown.get(session_id)
        if cached is None or cached[1] is not info:  # evicted at once (a full cache)
            return claims_of(info)
        return cached[2]

    async def token_claims(self, session: Session) -> dict[str, Any]:
        """The claims every access token of ``session`` carries (RFC 9068 section 2.2.1)."""
        info = await self.session_info(session.id, session)
        return claims_of(info) if info is not None else {}

    async def check(self, principal: Principal) -> None:
        """Raise ``ReauthRequired`` when the session's sign-in is older than the limit.

        A principal without a session (an API key, a client) is not judged here: the rule
        that account changes need a person's session refuses it.
        """
        info = await self.auth_info(principal)
        if info is None:
            return
        auth_time, _ = info
        if self._clock.now() - auth_time > self.max_age:
            raise ReauthRequired()

    async def reauth(
        self,
        principal: Principal,
        password: str | None,
        ctx: RequestContext,
        code: str | None = None,
        *,
        credential: Mapping[str, Any] | None = None,
    ) -> tuple[datetime, list[str]]:
        """Prove the session's user again: the password (and the TOTP code when TOTP is on),
        or instead a passkey's response to ``/v1/auth/reauth/passkey/options``."""
        if principal.user_id is None or principal.session_id is None:
            raise NotFound("Only a user's session can be re-authenticated.")
        user = await self._accounts.get_user(principal.user_id)
        await self._throttle.check(account=user.email, ip=ctx.ip)
        if credential is not None and self.passkey is not None:
            try:
                amr = await self.passkey(user, credential, ctx)
            except InvalidCredentials:
                await self._throttle.failed(account=user.email)
                raise
            return await self._record(principal.session_id, user, amr, ctx)
        if password is None:
            raise InvalidInput("Give the password, or a passkey's response (credential).")
        if not await self._accounts.verify_password(user.password_hash, password):
            await self._throttle.failed(account=user.email)
            await self._auditor.record(
                AuditType.LOGIN_FAILED,
                ctx,
                user_id=user.id,
                session_id=principal.session_id,
                reason="step_up",
            )
            raise InvalidCredentials("The password is incorrect.")
        amr = [PASSWORD]
        if self.second_factor is not None:
            amr = await self.second_factor(user, code, ctx, principal.session_id)
        return await self._record(principal.session_id, user, amr, ctx)

    async def _record(
        self, session_id: str, user: User, amr: list[str], ctx: RequestContext
    ) -> tuple[datetime, list[str]]:
        now = self._clock.now()
        audit = self._auditor.event(
            AuditType.STEP_UP, ctx, user_id=user.id, session_id=session_id, amr=amr
        )
        await self._store.record(session_id, now, amr, audit=[audit])
        self._shown[session_id] = (monotonic(), (now, amr), claims_of((now, amr)))
        await self._announce(user.id, "security.step_up", {"session_id": session_id})
        return now, amr
