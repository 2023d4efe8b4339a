"""An account's life by mail: verifying the address, changing it, resetting the password.

Each step writes its token, its mail (the outbox) and its audit line in one transaction, and
tells the user's sockets (security events) once it has happened.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from limits import RateLimitItem, parse

from watchword.domain.account_tokens import (
    AccountToken,
    TokenPurpose,
    new_token_secret,
    plausible_token,
)
from watchword.domain.audit import AuditEvent, AuditType
from watchword.domain.clock import Clock, Randomness, sha256_hex
from watchword.domain.errors import (
    Conflict,
    InvalidAccountToken,
    InvalidCredentials,
    InvalidEmail,
    NotFound,
    RateLimited,
)
from watchword.domain.mail import MailKind, OutgoingMail
from watchword.domain.sessions import RevokeReason, Session
from watchword.domain.users import User, normalize_email
from watchword.services.accounts import AccountService
from watchword.services.audit import Auditor
from watchword.services.context import RequestContext
from watchword.services.mail import MailComposer, MailSender, human_duration
from watchword.services.ratelimit import LoginThrottle, RateLimiter
from watchword.services.sessions import SessionService
from watchword.stores.accounts import AccountStores

log = logging.getLogger("watchword.accounts")

VERIFY_PATH = "/verify-email?token="
RESET_PATH = "/reset-password?token="
RESET_REQUEST_PAGE = "/reset-password"

SecurityHook = Callable[[str, str, dict[str, Any]], Awaitable[None]]


class AccountLifecycle:
    def __init__(
        self,
        *,
        stores: AccountStores,
        accounts: AccountService,
        sessions: SessionService,
        composer: MailComposer,
        sender: MailSender,
        auditor: Auditor,
        limiter: RateLimiter,
        login_throttle: LoginThrottle,
        clock: Clock,
        randomness: Randomness,
        verification_ttl: int,
        reset_ttl: int,
        verification_rate: str,
        reset_rate_address: str,
        reset_rate_account: str,
        reset_rate_ip: str,
    ) -> None:
        self._stores = stores
        self._accounts = accounts
        self._sessions = sessions
        self.composer = composer
        self.sender = sender
        self._auditor = auditor
        self._limiter = limiter
        self._login_throttle = login_throttle
        self._clock = clock
        self._random = randomness
        self._verification_ttl = verification_ttl
        self._reset_ttl = reset_ttl
        self._verification_rate: RateLimitItem = parse(verification_rate)
        self._reset_address: RateLimitItem = parse(reset_rate_address)
        self._reset_account: RateLimitItem = parse(reset_rate_account)
        self._reset_ip: RateLimitItem = parse(reset_rate_ip)
        self._hooks: list[SecurityHook] = []
        self._pending: set[asyncio.Task[None]] = set()
        accounts.registration_writer = self._register
        sender.on_sent.append(self._mail_sent)

    # -- security events -------------------------------------------------------------------

    def on_security_event(self, hook: SecurityHook) -> None:
        """Call ``hook(user_id, event, data)`` after each step (the user's sockets)."""
        self._hooks.append(hook)

    async def announce(self, user_id: str | None, event: str, data: dict[str, Any]) -> None:
        if user_id is None:
            return
        for hook in self._hooks:
            try:
                await hook(user_id, event, data)
            except Exception:
                log.exception("security-event hook failed")

    async def notify(
        self,
        user: User,
        kind: str,
        ctx: RequestContext,
        *,
        audit: Sequence[AuditEvent] = (),
    ) -> OutgoingMail:
        """A notice about a change already made (its link: the password-reset page), queued
        with ``audit`` in one transaction."""
        mail = self.composer.compose(
            kind, user.email, link=self.composer.link(RESET_REQUEST_PAGE), user_id=user.id
        )
        await self._stores.tokens.queue([mail], audit=[*audit, *self.queued_audit(ctx, [mail])])
        await self.mail_queued([mail])
        return mail

    async def mail_queued(self, mail: Sequence[OutgoingMail]) -> None:
        """After the commit that queued ``mail``: wake the sender, tell the users' sockets."""
        self.sender.notify()
        for m in mail:
            await self.announce(m.user_id, "security.mail_queued", {"kind": m.kind})

    async def _mail_sent(self, mail: OutgoingMail) -> None:
        await self._auditor.record(
            AuditType.MAIL_SENT,
            RequestContext(),
            user_id=mail.user_id,
            mail_id=mail.id,
            kind=mail.kind,
        )
        await self.announce(mail.user_id, "security.mail_sent", {"kind": mail.kind})

    def _later(self, step: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(step)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def queued_audit(self, ctx: RequestContext, mail: Sequence[OutgoingMail]) -> list[AuditEvent]:
        return [
            self._auditor.event(
                AuditType.MAIL_QUEUED, ctx, user_id=m.user_id, mail_id=m.id, kind=m.kind
            )
            for m in mail
        ]

    # -- tokens ----------------------------------------------------------------------------

    def _token(self, user_id: str, purpose: str, email: str, ttl: int) -> tuple[str, AccountToken]:
        secret, token_hash = new_token_secret(self._random)
        now = self._clock.now()
        token = AccountToken(
            id=self._random.new_id(),
            user_id=user_id,
            purpose=purpose,
            token_hash=token_hash,
            email=email,
            created_at=now,
            expires_at=now + timedelta(seconds=ttl),
        )
        return secret, token

    async def _find(self, secret: str, purposes: Sequence[str]) -> AccountToken:
        if not plausible_token(secret):
            raise InvalidAccountToken()
        token = await self._stores.tokens.get(sha256_hex(secret))
        if token is None or token.purpose not in purposes or not token.usable(self._clock.now()):
            raise InvalidAccountToken()
        return token

    def _verify_mail(self, user_id: str, email: str, secret: str, kind: str) -> OutgoingMail:
        return self.composer.compose(
            kind,
            email,
            link=self.composer.link(VERIFY_PATH + quote(secret)),
            user_id=user_id,
            valid_for=human_duration(self._verification_ttl),
        )

    # -- verification ----------------------------------------------------------------------

    async def _register(self, user: User, audit: list[AuditEvent], ctx: RequestContext) -> None:
        """Registration: the user, its verification token and mail, in one transaction."""
        secret, token = self._token(
            user.id, TokenPurpose.VERIFY_EMAIL, user.email, self._verification_ttl
        )
        mail = [self._verify_mail(user.id, user.email, secret, MailKind.VERIFY_EMAIL)]
        # The registration's own line says which mail it queued.
        audit = [
            replace(e, details={**e.details, "mail_queued": [m.id for m in mail]}) for e in audit
        ]
        await self._stores.tokens.register(user, audit=audit, token=token, mail=mail)
        await self.mail_queued(mail)

    async def resend_verification(self, user_id: str, ctx: RequestContext) -> None:
        user = await self._accounts.get_user(user_id)
        if user.email_verified_at is not None:
            raise Conflict("This email address is already verified.")
        if retry := await self._limiter.hit(self._verification_rate, "verify-mail", user.id):
            raise RateLimited(retry)
        secret, token = self._token(
            user.id, TokenPurpose.VERIFY_EMAIL, user.email, self._verification_ttl
        )
        mail = [self._verify_mail(user.id, user.email, secret, MailKind.VERIFY_EMAIL)]
        sent = self._auditor.event(
            AuditType.EMAIL_VERIFICATION_SENT, ctx, user_id=user.id, email=user.email
        )
        await self._stores.tokens.issue(
            token, mail=mail, audit=[sent, *self.queued_audit(ctx, mail)]
        )
        await self.mail_queued(mail)
        await self.announce(user.id, "security.email_verification_sent", {"email": user.email})

    async def resend_verification_to(self, email: str, ctx: RequestContext) -> None:
        """A new link for a signed-out user: the same answer whether or not the address has
        an account waiting for verification; budgets as for password resets."""
        try:
            normalized = normalize_email(email)
        except InvalidEmail:
            normalized = email.strip().lower()[:254]
        if ctx.ip and (retry := await self._limiter.hit(self._reset_ip, "verify-ip", ctx.ip)):
            raise RateLimited(retry)
        if retry := await self._limiter.hit(self._reset_address, "verify-address", normalized):
            raise RateLimited(retry)
        user = await self._accounts.find_user_or_none(normalized)
        secret, token = self._token(
            user.id if user else "", TokenPurpose.VERIFY_EMAIL, normalized, self._verification_ttl
        )
        mail = self._verify_mail(token.user_id, normalized, secret, MailKind.VERIFY_EMAIL)
        usable = user is not None and not user.disabled and user.email_verified_at is None
        if user is not None and usable:
            usable = not await self._limiter.hit(self._verification_rate, "verify-mail", user.id)
        if user is None or not usable:
            audit = self._auditor.event(
                AuditType.EMAIL_VERIFICATION_SENT,
                ctx,
                user_id=user.id if user else None,
                email=normalized,
                sent=False,
            )
            await self._stores.tokens.issue_nothing(
                token.token_hash, self._clock.now(), audit=[audit]
            )
            return
        sent = self._auditor.event(
            AuditType.EMAIL_VERIFICATION_SENT, ctx, user_id=user.id, email=normalized, sent=True
        )
        await self._stores.tokens.issue(
            token, mail=[mail], audit=[sent, *self.queued_audit(ctx, [mail])]
        )
        await self.mail_queued([mail])
        await self.announce(user.id, "security.email_verification_sent", {"email": normalized})

    async def verify_email(self, secret: str, ctx: RequestContext) -> User:
        token = await self._find(secret, (TokenPurpose.VERIFY_EMAIL, TokenPurpose.CHANGE_EMAIL))
        before = await self._accounts.get_user(token.user_id)
        changed = token.purpose == TokenPurpose.CHANGE_EMAIL and before.email != token.email
        mail: list[OutgoingMail] = []
        if changed:
            mail.append(
                self.composer.compose(
                    MailKind.EMAIL_CHANGED,
                    before.email,
                    link=self.composer.link(RESET_REQUEST_PAGE),
                    user_id=before.id,
                    new_email=token.email,
                )
            )
        audit = [
            self._auditor.event(
                AuditType.EMAIL_CHANGED if changed else AuditType.EMAIL_VERIFIED,
                ctx,
                user_id=before.id,
                email=token.email,
                **({"previous_email": before.email} if changed else {}),
            ),
            *self.queued_audit(ctx, mail),
        ]
        user = await self._stores.tokens.verify_email(
            token, self._clock.now(), origin=self._sessions.node_id, audit=audit, mail=mail
        )
        if user is None:
            raise InvalidAccountToken()
        self._sessions.cache.drop_user(user.id)
        await self._sessions.announce_user_changed(user.id, disabled=user.disabled)
        await self.mail_queued(mail)
        await self.announce(
            user.id,
            "security.email_changed" if changed else "security.email_verified",
            {"email": user.email},
        )
        return user

    async def request_email_change(
        self, user_id: str, *, new_email: str, password: str, ctx: RequestContext
    ) -> None:
        """The new address takes effect once verified; the old one is told now."""
        user = await self._accounts.get_user(user_id)
        email = normalize_email(new_email)
        await self._login_throttle.check(account=user.email, ip=ctx.ip)
        if not await self._accounts.verify_password(user.password_hash, password):
            await self._login_throttle.failed(account=user.email)
            raise InvalidCredentials("The password is incorrect.")
        if email == user.email:
            raise Conflict("This is already the account's email address.")
        if retry := await self._limiter.hit(self._verification_rate, "verify-mail", user.id):
            raise RateLimited(retry)
        # An address in use elsewhere is refused when the link is followed, not here: the
        # answer must not tell a signed-in user which addresses have accounts.
        secret, token = self._token(
            user.id, TokenPurpose.CHANGE_EMAIL, email, self._verification_ttl
        )
        mail = [
            self._verify_mail(user.id, email, secret, MailKind.CONFIRM_NEW_EMAIL),
            self.composer.compose(
                MailKind.EMAIL_CHANGE_REQUESTED,
                user.email,
                link=self.composer.link(RESET_REQUEST_PAGE),
                user_id=user.id,
                new_email=email,
            ),
        ]
        audit = [
            self._auditor.event(
                AuditType.EMAIL_CHANGE_REQUESTED, ctx, user_id=user.id, new_email=email
            ),
            *self.queued_audit(ctx, mail),
        ]
        await self._stores.tokens.issue(token, mail=mail, audit=audit)
        await self.mail_queued(mail)
        await self.announce(user.id, "security.email_change_requested", {"new_email": email})

    # -- password reset --------------------------------------------------------------------

    async def request_password_reset(self, email: str, ctx: RequestContext) -> None:
        """Same work, same answer, known account or not: nothing tells them apart."""
        try:
            normalized = normalize_email(email)
        except InvalidEmail:
            normalized = email.strip().lower()[:254]
        if ctx.ip and (retry := await self._limiter.hit(self._reset_ip, "reset-ip", ctx.ip)):
            raise RateLimited(retry)
        if retry := await self._limiter.hit(self._reset_address, "reset-address", normalized):
            raise RateLimited(retry)
        user = await self._accounts.find_user_or_none(normalized)
        # Always make a token and render a message, whether or not they are used.
        secret, token = self._token(
            user.id if user else "", TokenPurpose.PASSWORD_RESET, normalized, self._reset_ttl
        )
        mail = self.composer.compose(
            MailKind.PASSWORD_RESET,
            normalized,
            link=self.composer.link(RESET_PATH + quote(secret)),
            user_id=user.id if user else None,
            valid_for=human_duration(self._reset_ttl),
        )
        usable = user is not None and not user.disabled
        # Every request spends from an account budget (an unknown address from one of its
        # own), so both cost the same; over it, silence, as for an unknown address.
        account_key = user.id if user else "?" + normalized
        if await self._limiter.hit(self._reset_account, "reset-account", account_key):
            usable = False
        if not usable:
            audit = self._auditor.event(
                AuditType.PASSWORD_RESET_REQUESTED,
                ctx,
                user_id=user.id if user else None,
                email=normalized,
                sent=False,
                reason="unknown_email" if user is None else "not_sent",
            )
            await self._stores.tokens.issue_nothing(
                token.token_hash, self._clock.now(), audit=[audit]
            )
            return
        assert user is not None
        # One audit row, as for an unknown address; it names the mail it queued.
        audit_row = self._auditor.event(
            AuditType.PASSWORD_RESET_REQUESTED,
            ctx,
            user_id=user.id,
            email=normalized,
            sent=True,
            mail_queued=[mail.id],
        )
        await self._stores.tokens.issue(token, mail=[mail], audit=[audit_row])
        # After the answer: the request takes as long as one for an unknown address.
        self._later(self._reset_requested(user.id, mail))

    async def _reset_requested(self, user_id: str, mail: OutgoingMail) -> None:
        await self.mail_queued([mail])
        await self.announce(user_id, "security.password_reset_requested", {})

    async def send_reset(self, email: str, ctx: RequestContext, *, actor_id: str) -> OutgoingMail:
        """An administrator sends a reset link (no throttle, and unknown addresses fail)."""
        user = await self._accounts.find_user(email)
        secret, token = self._token(
            user.id, TokenPurpose.PASSWORD_RESET, user.email, self._reset_ttl
        )
        mail = self.composer.compose(
            MailKind.PASSWORD_RESET,
            user.email,
            link=self.composer.link(RESET_PATH + quote(secret)),
            user_id=user.id,
            valid_for=human_duration(self._reset_ttl),
        )
        audit = [
            self._auditor.event(
                AuditType.PASSWORD_RESET_REQUESTED,
                ctx,
                user_id=user.id,
                actor_id=actor_id,
                email=user.email,
                sent=True,
            ),
            *self.queued_audit(ctx, [mail]),
        ]
        await self._stores.tokens.issue(token, mail=[mail], audit=audit)
        await self.mail_queued([mail])
        await self.announce(user.id, "security.password_reset_requested", {})
        return mail

    async def reset_password(
        self, secret: str, new_password: str, ctx: RequestContext
    ) -> tuple[User, list[Session]]:
        token = await self._find(secret, (TokenPurpose.PASSWORD_RESET,))
        if retry := await self._limiter.hit(self._reset_account, "reset-confirm", token.user_id):
            raise RateLimited(retry)
        user = await self._accounts.get_user(token.user_id)
        self._accounts.password_policy.check(new_password, email=user.email)
        password_hash = await self._accounts.hash_password(new_password)
        mail = [
            self.composer.compose(
                MailKind.PASSWORD_CHANGED,
                user.email,
                link=self.composer.link(RESET_REQUEST_PAGE),
                user_id=user.id,
            )
        ]

        def audit(revoked: list[Session]) -> list[AuditEvent]:
            return [
                self._auditor.event(
                    AuditType.PASSWORD_RESET,
                    ctx,
                    user_id=user.id,
                    revoked=len(revoked),
                    sessions=[s.id for s in revoked],
                ),
                *self.queued_audit(ctx, mail),
            ]

        changed, revoked = await self._stores.tokens.reset_password(
            token,
            password_hash,
            self._clock.now(),
            origin=self._sessions.node_id,
            revoke_reason=RevokeReason.PASSWORD_RESET,
            audit=audit,
            mail=mail,
        )
        if changed is None:
            raise InvalidAccountToken()
        self._sessions.cache.drop_user(changed.id)
        await self._sessions.after_revoke(revoked)
        await self._sessions.announce_user_changed(changed.id, disabled=changed.disabled)
        await self.mail_queued(mail)
        await self.announce(changed.id, "security.password_reset", {"revoked": len(revoked)})
        return changed, revoked

    # -- the outbox, for operators ---------------------------------------------------------

    async def outbox(self, *, limit: int, unsent_only: bool = False) -> list[OutgoingMail]:
        return await self._stores.outbox.page(limit=limit, unsent_only=unsent_only)

    async def mail(self, mail_id: str) -> OutgoingMail:
        mail = await self._stores.outbox.get(mail_id)
        if mail is None:
            raise NotFound("No such mail.")
        return mail
