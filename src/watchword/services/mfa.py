"""Second factors: TOTP enrolment and removal, recovery codes, and the challenge step of a
sign-in (and of a step-up) when a second factor is on.

A TOTP secret is sealed with the master key at rest; recovery codes and challenges are kept
as SHA-256 digests. Every wrong code spends the sign-in budget of the account, like a wrong
password, and a TOTP time step is accepted once per user.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import segno

from watchword.domain.audit import AuditType
from watchword.domain.clock import Clock
from watchword.domain.errors import (
    AccountDisabled,
    InvalidMfaChallenge,
    InvalidMfaCode,
    InvalidPasskey,
    MfaAlreadyEnabled,
    MfaCodeRequired,
    NotFound,
    RateLimited,
)
from watchword.domain.masterkey import MasterKey
from watchword.domain.mfa import (
    METHODS,
    MULTI_FACTOR,
    OTP,
    TOTP_DIGITS,
    MfaChallenge,
    TotpFactor,
    digest,
    matching_step,
    new_challenge,
    new_recovery_codes,
    new_totp_secret,
    otpauth_uri,
    recovery_code_digest,
)
from watchword.domain.passkeys import METHOD as PASSKEY_METHOD
from watchword.domain.principal import Principal
from watchword.domain.users import User
from watchword.services.accounts import AccountService, SecondFactorNeeded
from watchword.services.audit import Auditor
from watchword.services.context import RequestContext
from watchword.services.ratelimit import LoginThrottle
from watchword.stores.accounts import MfaStore

if TYPE_CHECKING:
    from watchword.services.passkeys import PasskeyService

PASSWORD = "pwd"  # RFC 8176


@dataclass(frozen=True, slots=True)
class Enrolment:
    secret: str
    otpauth_uri: str
    qr_svg: str


@dataclass(frozen=True, slots=True)
class SecondFactorPassed:
    user: User
    challenge: MfaChallenge
    amr: list[str]
    method: str


class MfaService:
    def __init__(
        self,
        *,
        store: MfaStore,
        accounts: AccountService,
        master_key: MasterKey,
        throttle: LoginThrottle,
        auditor: Auditor,
        clock: Clock,
        issuer: str,
        challenge_ttl: int,
        announce: Callable[[str | None, str, dict[str, Any]], Awaitable[None]],
    ) -> None:
        self._store = store
        self._accounts = accounts
        self._master_key = master_key
        self._throttle = throttle
        self._auditor = auditor
        self._clock = clock
        self._issuer = issuer
        self._challenge_ttl = timedelta(seconds=challenge_ttl)
        self._announce = announce
        # Passkeys are second factors too: set by the container.
        self.passkeys: PasskeyService | None = None

    def _seal(self, secret: str) -> str:
        return self._master_key.seal(secret.encode())

    def _unseal(self, factor: TotpFactor) -> str:
        return self._master_key.unseal(factor.secret_sealed).decode()

    async def _user_of(self, principal: Principal) -> User:
        if principal.user_id is None:
            raise NotFound("Only users have second factors.")
        return await self._accounts.get_user(principal.user_id)

    async def totp_on(self, user_id: str) -> bool:
        factor = await self._store.get_totp(user_id)
        return factor is not None and factor.active

    async def is_on(self, user_id: str) -> bool:
        """Any second factor: TOTP, or a passkey."""
        if await self.totp_on(user_id):
            return True
        return self.passkeys is not None and await self.passkeys.has_any(user_id)

    async def methods_for(self, user_id: str) -> tuple[str, ...]:
        methods: tuple[str, ...] = METHODS if await self.totp_on(user_id) else ()
        if self.passkeys is not None and await self.passkeys.has_any(user_id):
            methods += (PASSKEY_METHOD,)
        return methods

    async def status(self, user_id: str) -> dict[str, Any]:
        on = await self.totp_on(user_id)
        passkeys = await self.passkeys.list_for(user_id) if self.passkeys is not None else []
        return {
            "totp": on,
            "recovery_codes_left": await self._store.unused_codes(user_id) if on else 0,
            "passkeys": len(passkeys),
        }

    # -- enrolment ------------------------------------------------------------------------

    async def enroll(self, principal: Principal, ctx: RequestContext) -> Enrolment:
        """A new pending secret (replacing an unconfirmed one); on once confirmed."""
        user = await self._user_of(principal)
        secret = new_totp_secret()
        factor = TotpFactor(
            user_id=user.id, secret_sealed=self._seal(secret), created_at=self._clock.now()
        )
        started = self._auditor.event(
            AuditType.MFA_ENROLMENT_STARTED,
            ctx,
            user_id=user.id,
            session_id=principal.session_id,
            method="totp",
        )
        if not await self._store.put_pending(factor, audit=[started]):
            raise MfaAlreadyEnabled()
        uri = otpauth_uri(secret, account=user.email, issuer=self._issuer)
        svg = segno.make(uri, error="m").svg_inline(scale=4, title=f"{self._issuer} TOTP")
        return Enrolment(secret=secret, otpauth_uri=uri, qr_svg=svg)

    async def confirm(self, principal: Principal, code: str, ctx: RequestContext) -> list[str]:
        """Turn the pending secret on with a code from it; the new recovery codes, once."""
        user = await self._user_of(principal)
        factor = await self._store.get_totp(user.id)
        if factor is not None and factor.active:
            raise MfaAlreadyEnabled()
        if factor is None:
            raise NotFound("No TOTP enrolment is waiting: start one (POST /v1/me/mfa/totp).")
        await self._throttle.check(account=user.email, ip=ctx.ip)
        step = matching_step(self._unseal(factor), code, self._clock.now())
        if step is None:
            await self._failed(user, ctx, principal.session_id, reason="enrolment_code")
            raise InvalidMfaCode()
        codes = new_recovery_codes()
        added = self._auditor.event(
            AuditType.MFA_ADDED,
            ctx,
            user_id=user.id,
            session_id=principal.session_id,
            method="totp",
        )
        if not await self._store.confirm(
            user.id,
            step,
            [recovery_code_digest(c) for c in codes],
            self._clock.now(),
            audit=[added],
        ):
            raise MfaAlreadyEnabled()
        await self._announce(user.id, "security.mfa_added", {"method": "totp"})
        return codes

    async def remove(self, principal: Principal, ctx: RequestContext) -> None:
        user = await self._user_of(principal)
        removed = self._auditor.event(
            AuditType.MFA_REMOVED,
            ctx,
            user_id=user.id,
            session_id=principal.session_id,
            method="totp",
        )
        if not await self._store.remove(user.id, audit=[removed]):
            raise NotFound("TOTP is not on.")
        await self._announce(user.id, "security.mfa_removed", {"method": "totp"})

    async def new_recovery_codes(self, principal: Principal, ctx: RequestContext) -> list[str]:
        user = await self._user_of(principal)
        if not await self.totp_on(user.id):
            raise NotFound("Recovery codes go with a second factor: turn TOTP on first.")
        codes = new_recovery_codes()
        replaced = self._auditor.event(
            AuditType.RECOVERY_CODES_REPLACED, ctx, user_id=user.id, session_id=principal.session_id
        )
        await self._store.replace_codes(
            user.id, [recovery_code_digest(c) for c in codes], self._clock.now(), audit=[replaced]
        )
        await self._announce(user.id, "security.recovery_codes_replaced", {})
        return codes

    # -- the second step of a sign-in -----------------------------------------------------

    async def challenge_for(
        self, user: User, kind: str, device_name: str | None, ctx: RequestContext
    ) -> SecondFactorNeeded | None:
        """After a correct password: a challenge if a second factor is on, else None."""
        methods = await self.methods_for(user.id)
        if not methods:
            return None
        value = new_challenge()
        now = self._clock.now()
        await self._store.create_challenge(
            MfaChallenge(
                challenge_hash=digest(value),
                user_id=user.id,
                mode=kind,
                device_name=device_name,
                created_at=now,
                expires_at=now + self._challenge_ttl,
            )
        )
        await self._auditor.record(AuditType.MFA_CHALLENGED, ctx, user_id=user.id, kind=kind)
        return SecondFactorNeeded(user=user, challenge=value, methods=methods)

    async def _pending(self, challenge: str, ctx: RequestContext) -> tuple[MfaChallenge, User]:
        found = await self._store.get_challenge(digest(challenge))
        if found is None or not found.usable(self._clock.now()):
            # Guessing challenges spends the address's budget like guessing passwords.
            await self._check_throttle(None, ctx)
            raise InvalidMfaChallenge()
        user = await self._accounts.get_user(found.user_id)
        if user.disabled:
            raise AccountDisabled()
        return found, user

    async def passkey_options(self, challenge: str, ctx: RequestContext) -> dict[str, Any]:
        """WebAuthn options for the passkeys of the user a sign-in challenge waits for."""
        _, user = await self._pending(challenge, ctx)
        if self.passkeys is None:
            raise NotFound("This account has no passkey.")
        return await self.passkeys.second_factor_options(user)

    async def complete(
        self,
        challenge: str,
        code: str | None,
        ctx: RequestContext,
        credential: Mapping[str, Any] | None = None,
    ) -> SecondFactorPassed:
        """Check the code (or the passkey's response) against the challenge's user; the
        challenge is then used up."""
        challenge_hash = digest(challenge)
        found, user = await self._pending(challenge, ctx)
        await self._check_throttle(user, ctx)
        if credential is not None and self.passkeys is not None:
            amr = await self.passkeys.second_factor(user, credential, ctx)
            passed = (amr, PASSKEY_METHOD) if amr is not None else None
        elif code:
            passed = await self._verify(user, code, ctx)
        else:
            passed = None
        if passed is None:
            await self._failed(user, ctx, None, reason="sign_in")
            raise InvalidPasskey() if credential is not None else InvalidMfaCode()
        amr, method = passed
        if not await self._store.use_challenge(challenge_hash, self._clock.now()):
            raise InvalidMfaChallenge()
        return SecondFactorPassed(user=user, challenge=found, amr=amr, method=method)

    async def step_up_amr(
        self, user: User, code: str | None, ctx: RequestContext, session_id: str | None
    ) -> list[str]:
        """The ``amr`` of a step-up whose password was right: the TOTP (or recovery) code is
        needed too when TOTP is on. (A passkey-only account steps up with its password.)"""
        if not await self.totp_on(user.id):
            return [PASSWORD]
        if not code:
            raise MfaCodeRequired()
        passed = await self._verify(user, code, ctx, session_id=session_id)
        if passed is None:
            await self._failed(user, ctx, session_id, reason="step_up")
            raise InvalidMfaCode()
        return passed[0]

    async def _check_throttle(self, user: User | None, ctx: RequestContext) -> None:
        try:
            await self._throttle.check(account=user.email if user else "", ip=ctx.ip)
        except RateLimited:
            await self._auditor.record(
                AuditType.LOGIN_RATE_LIMITED, ctx, user_id=user.id if user else None, step="mfa"
            )
            raise

    async def _verify(
        self, user: User, code: str, ctx: RequestContext, *, session_id: str | None = None
    ) -> tuple[list[str], str] | None:
        """(amr, method) when ``code`` is a fresh TOTP code or an unused recovery code."""
        factor = await self._store.get_totp(user.id)
        if factor is None or not factor.active:
            return None
        compact = code.strip().replace(" ", "")
        if len(compact) == TOTP_DIGITS and compact.isdigit():
            step = matching_step(self._unseal(factor), compact, self._clock.now())
            # A step at or before the last used one is a replay: refused.
            if step is None or not await self._store.use_step(user.id, step):
                return None
            return [PASSWORD, OTP, MULTI_FACTOR], "totp"
        used = self._auditor.event(
            AuditType.RECOVERY_CODE_USED, ctx, user_id=user.id, session_id=session_id
        )
        if not await self._store.use_recovery_code(
            user.id, recovery_code_digest(code), self._clock.now(), audit=[used]
        ):
            return None
        left = await self._store.unused_codes(user.id)
        await self._announce(user.id, "security.recovery_code_used", {"left": left})
        # RFC 8176 has no value for a look-up secret: "mfa" alone says a second factor.
        return [PASSWORD, MULTI_FACTOR], "recovery_code"

    async def _failed(
        self, user: User, ctx: RequestContext, session_id: str | None, *, reason: str
    ) -> None:
        await self._throttle.failed(account=user.email)
        await self._auditor.record(
            AuditType.MFA_FAILED, ctx, user_id=user.id, session_id=session_id, reason=reason
        )
        await self._announce(user.id, "security.mfa_failed", {"reason": reason})
