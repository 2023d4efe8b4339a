"""Passkeys: registration, the list, rename and removal, a sign-in without an email
(discoverable credentials) and the passkey as a second factor after a password.

Every ceremony's challenge is made here, kept server side as a SHA-256 digest for
``WATCHWORD_PASSKEY_CHALLENGE_TTL`` seconds and used up (one conditional update) before the
response is verified, so a response can be presented once. A sign-in moves the sign count
forward in one conditional update too: a replayed or cloned response is refused.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from watchword.domain.audit import AuditType
from watchword.domain.clock import Clock, Randomness
from watchword.domain.errors import (
    AccountDisabled,
    EmailNotVerified,
    InvalidPasskey,
    InvalidPasskeyRegistration,
    NotFound,
    PasskeyExists,
    RateLimited,
)
from watchword.domain.mfa import digest
from watchword.domain.passkeys import (
    MAX_NAME,
    REGISTER,
    SECOND_FACTOR,
    SIGN_IN,
    STEP_UP,
    Passkey,
    PasskeyChallenge,
    amr_of,
)
from watchword.domain.principal import Principal
from watchword.domain.users import User, check_label
from watchword.domain.webauthn import CeremonyFailed, RelyingParty
from watchword.services.accounts import AccountService
from watchword.services.audit import Auditor
from watchword.services.context import RequestContext
from watchword.services.ratelimit import LoginThrottle
from watchword.stores.passkeys import PasskeyStore

Announce = Callable[[str | None, str, dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class PasskeySignIn:
    user: User
    passkey: Passkey
    amr: list[str]


class PasskeyService:
    def __init__(
        self,
        *,
        store: PasskeyStore,
        accounts: AccountService,
        relying_party: RelyingParty,
        throttle: LoginThrottle,
        auditor: Auditor,
        clock: Clock,
        randomness: Randomness,
        challenge_ttl: int,
        announce: Announce,
    ) -> None:
        self._store = store
        self._accounts = accounts
        self.relying_party = relying_party
        self._throttle = throttle
        self._auditor = auditor
        self._clock = clock
        self._random = randomness
        self._ttl = timedelta(seconds=challenge_ttl)
        self._announce = announce

    async def _new_challenge(self, challenge: bytes, purpose: str, user_id: str | None) -> None:
        now = self._clock.now()
        await self._store.create_challenge(
            PasskeyChallenge(
                challenge_hash=digest(challenge.hex()),
                purpose=purpose,
                user_id=user_id,
                created_at=now,
                expires_at=now + self._ttl,
            )
        )

    async def _use_challenge(self, challenge: bytes, purpose: str) -> PasskeyChallenge | None:
        return await self._store.use_challenge(digest(challenge.hex()), purpose, self._clock.now())

    async def has_any(self, user_id: str) -> bool:
        return await self._store.count_for(user_id) > 0

    async def list_for(self, user_id: str) -> list[Passkey]:
        return await self._store.list_for(user_id)

    async def remove_all(self, user_id: str) -> int:
        return await self._store.remove_all(user_id)

    # -- registration ---------------------------------------------------------------------

    async def registration_options(self, principal: Principal) -> dict[str, Any]:
        user = await self._person(principal)
        mine = await self._store.list_for(user.id)
        challenge, options = self.relying_party.registration_options(
            user_handle=user.id.encode(),
            user_name=user.email,
            exclude=[(p.credential_id, p.transports) for p in mine],
        )
        await self._new_challenge(challenge, REGISTER, user.id)
        return options

    async def register(
        self,
        principal: Principal,
        credential: Mapping[str, Any],
        name: str | None,
        ctx: RequestContext,
    ) -> Passkey:
        user = await self._person(principal)
        check_label(name, "name", MAX_NAME)
        try:
            parsed, challenge = self.relying_party.registration_challenge(credential)
            found = await self._use_challenge(challenge, REGISTER)
            if found is None or found.user_id != user.id:
                raise CeremonyFailed("challenge", "unknown, used, expired or another user's")
            new = self.relying_party.verify_registration(parsed, challenge)
        except CeremonyFailed as exc:
            await self._auditor.record(
                AuditType.PASSKEY_FAILED,
                ctx,
                user_id=user.id,
                session_id=principal.session_id,
                step="register",
                reason=exc.reason,
            )
            raise InvalidPasskeyRegistration() from exc
        now = self._clock.now()
        passkey = Passkey(
            id=self._random.new_id(),
            user_id=user.id,
            credential_id=new.credential_id,
            public_key=new.public_key,
            sign_count=new.sign_count,
            name=name or f"Passkey {now:%Y-%m-%d}",
            transports=new.transports,
            backed_up=new.backed_up,
            created_at=now,
        )
        added = self._auditor.event(
            AuditType.MFA_ADDED,
            ctx,
            user_id=user.id,
            session_id=principal.session_id,
            method="passkey",
            passkey_id=passkey.id,
        )
        if not await self._store.add(passkey, audit=[added]):
            raise PasskeyExists()
        await self._announce(
            user.id, "security.mfa_added", {"method": "passkey", "passkey_id": passkey.id}
        )
        return passkey

    async def rename(
        self, principal: Principal, passkey_id: str, name: str, ctx: RequestContext
    ) -> Passkey:
        user = await self._person(principal)
        check_label(name, "name", MAX_NAME)
        renamed = await self._store.rename(user.id, passkey_id, name)
        if renamed is None:
            raise NotFound("No such passkey.")
        await self._auditor.record(
            AuditType.PASSKEY_RENAMED,
            ctx,
            user_id=user.id,
            session_id=principal.session_id,
            passkey_id=passkey_id,
        )
        return renamed

    async def remove(self, principal: Principal, passkey_id: str, ctx: RequestContext) -> None:
        user = await self._person(principal)
        removed = self._auditor.event(
            AuditType.MFA_REMOVED,
            ctx,
            user_id=user.id,
            session_id=principal.session_id,
            method="passkey",
            passkey_id=passkey_id,
        )
        if not await self._store.remove(user.id, passkey_id, audit=[removed]):
            raise NotFound("No such passkey.")
        await self._announce(
            user.id, "security.mfa_removed", {"method": "passkey", "passkey_id": passkey_id}
        )

    # -- sign-in without an email ---------------------------------------------------------

    async def sign_in_options(self, ctx: RequestContext) -> dict[str, Any]:
        # Each call stores a row: the address's sign-in budget bounds how many.
        await self._check_throttle(None, ctx)
        challenge, options = self.relying_party.authentication_options(
            allow=[], user_verification=True
        )
        await self._new_challenge(challenge, SIGN_IN, None)
        return options

    async def sign_in(self, credential: Mapping[str, Any], ctx: RequestContext) -> PasskeySignIn:
        """The user whose discoverable passkey signed this challenge, and the ``amr``."""
        await self._check_throttle(None, ctx)
        passkey, backed_up = await self._assert(credential, SIGN_IN, ctx, user=None)
        user = await self._accounts.get_user(passkey.user_id)
        if user.disabled:
            await self._auditor.record(
                AuditType.LOGIN_FAILED, ctx, user_id=user.id, reason="disabled", method="passkey"
            )
            raise AccountDisabled()
        if self._accounts.require_verified_email and user.email_verified_at is None:
            await self._auditor.record(
                AuditType.LOGIN_FAILED,
                ctx,
                user_id=user.id,
                reason="email_not_verified",
                method="passkey",
            )
            raise EmailNotVerified()
        return PasskeySignIn(
            user=user,
            passkey=passkey,
            amr=amr_of(backed_up=backed_up, after_password=False),
        )

    # -- the second step of a password sign-in -------------------------------------------

    async def second_factor_options(self, user: User) -> dict[str, Any]:
        mine = await self._store.list_for(user.id)
        if not mine:
            raise NotFound("This account has no passkey.")
        challenge, options = self.relying_party.authentication_options(
            allow=[(p.credential_id, p.transports) for p in mine], user_verification=False
        )
        await self._new_challenge(challenge, SECOND_FACTOR, user.id)
        return options

    async def second_factor(
        self, user: User, credential: Mapping[str, Any], ctx: RequestContext
    ) -> list[str] | None:
        """The ``amr`` when ``credential`` is a valid assertion of one of ``user``'s
        passkeys for a second-factor challenge of theirs; None otherwise (audited)."""
        try:
            _, backed_up = await self._assert(credential, SECOND_FACTOR, ctx, user=user)
        except InvalidPasskey:
            return None
        return amr_of(backed_up=backed_up, after_password=True)

    # -- step-up ------------------------------------------------------------------------

    async def step_up_options(self, principal: Principal) -> dict[str, Any]:
        user = await self._person(principal)
        mine = await self._store.list_for(user.id)
        if not mine:
            raise NotFound("This account has no passkey.")
        challenge, options = self.relying_party.authentication_options(
            allow=[(p.credential_id, p.transports) for p in mine], user_verification=True
        )
        await self._new_challenge(challenge, STEP_UP, user.id)
        return options

    async def step_up(
        self, user: User, credential: Mapping[str, Any], ctx: RequestContext
    ) -> list[str]:
        """The ``amr`` of a step-up made with one of ``user``'s passkeys (user verification
        required: it stands in for the password and a second factor); raises
        ``InvalidPasskey``."""
        _, backed_up = await self._assert(credential, STEP_UP, ctx, user=user)
        return amr_of(backed_up=backed_up, after_password=False)

    # -- shared ---------------------------------------------------------------------------

    async def _assert(
        self,
        credential: Mapping[str, Any],
        purpose: str,
        ctx: RequestContext,
        *,
        user: User | None,
    ) -> tuple[Passkey, bool]:
        """(the passkey, whether it is synced) for a valid assertion; raises
        ``InvalidPasskey`` after an audit line naming the check that refused it."""
        rp = self.relying_party
        passkey = None
        try:
            assertion, challenge = rp.parse_assertion(credential)
            found = await self._use_challenge(challenge, purpose)
            if found is None or (user is not None and found.user_id != user.id):
                raise CeremonyFailed("challenge", "unknown, used, expired or another user's")
            passkey = await self._store.get_by_credential(assertion.credential_id)
            if passkey is None or (user is not None and passkey.user_id != user.id):
                passkey = None
                raise CeremonyFailed("unknown_credential")
            if assertion.user_handle is not None and assertion.user_handle != (
                passkey.user_id.encode()
            ):
                raise CeremonyFailed("user_handle")
            verified = rp.verify_assertion(
                assertion,
                challenge,
                public_key=passkey.public_key,
                sign_count=passkey.sign_count,
                # Standing in for a password, the key must verify its user (PIN, biometric).
                user_verification=purpose in (SIGN_IN, STEP_UP),
            )
            used = self._auditor.event(
                AuditType.PASSKEY_USED,
                ctx,
                user_id=passkey.user_id,
                passkey_id=passkey.id,
                step=purpose,
            )
            if not await self._store.use(
                passkey.id, verified.new_sign_count, self._clock.now(), audit=[used]
            ):
                # Another request moved the counter past this response meanwhile.
                raise CeremonyFailed("sign_count", "raced")
        except CeremonyFailed as exc:
            owner = passkey.user_id if passkey else (user.id if user else None)
            await self._refused(owner, exc.reason, purpose, ctx)
            raise InvalidPasskey() from exc
        await self._announce(
            passkey.user_id,
            "security.passkey_used",
            {"passkey_id": passkey.id, "step": purpose},
        )
        return passkey, verified.backed_up or passkey.backed_up

    async def _refused(
        self, user_id: str | None, reason: str, purpose: str, ctx: RequestContext
    ) -> None:
        await self._auditor.record(
            AuditType.PASSKEY_FAILED, ctx, user_id=user_id, step=purpose, reason=reason
        )
        if user_id is not None:
            await self._announce(
                user_id, "security.passkey_refused", {"reason": reason, "step": purpose}
            )

    async def _check_throttle(self, user: User | None, ctx: RequestContext) -> None:
        try:
            await self._throttle.check(account=user.email if user else "", ip=ctx.ip)
        except RateLimited:
            await self._auditor.record(
                AuditType.LOGIN_RATE_LIMITED,
                ctx,
                user_id=user.id if user else None,
                step="passkey",
            )
            raise

    async def _person(self, principal: Principal) -> User:
        if principal.user_id is None:
            raise NotFound("Only users have passkeys.")
        return await self._accounts.get_user(principal.user_id)
