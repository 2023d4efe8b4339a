"""An administrator's answer to a lost second factor (`watchword users reset-mfa`).

TOTP, recovery codes and passkeys go, every session of the user ends (none may outlive the
factors that signed it in; a refresh family ends with its session), and the audit line and the
notice to the user are written, all in one transaction: a failure anywhere leaves the account
as it was. The bus and control-feed publication follow the commit, as other revocations do.
"""

from __future__ import annotations

from watchword.domain.audit import AuditEvent, AuditType
from watchword.domain.clock import Clock
from watchword.domain.mail import MailKind, OutgoingMail
from watchword.domain.mfa import FactorReset
from watchword.domain.sessions import RevokeReason
from watchword.domain.users import User
from watchword.services.audit import Auditor
from watchword.services.context import RequestContext
from watchword.services.lifecycle import RESET_REQUEST_PAGE, AccountLifecycle
from watchword.services.sessions import SessionService
from watchword.stores.accounts import MfaStore


class FactorResetService:
    def __init__(
        self,
        *,
        store: MfaStore,
        lifecycle: AccountLifecycle,
        sessions: SessionService,
        auditor: Auditor,
        clock: Clock,
    ) -> None:
        self._store = store
        self._lifecycle = lifecycle
        self._sessions = sessions
        self._auditor = auditor
        self._clock = clock

    async def reset(
        self, user: User, ctx: RequestContext, *, actor_id: str
    ) -> tuple[FactorReset, OutgoingMail]:
        composer = self._lifecycle.composer
        mail = composer.compose(
            MailKind.MFA_RESET,
            user.email,
            link=composer.link(RESET_REQUEST_PAGE),
            user_id=user.id,
        )

        def audit(done: FactorReset) -> list[AuditEvent]:
            return [
                self._auditor.event(
                    AuditType.MFA_RESET,
                    ctx,
                    user_id=user.id,
                    actor_id=actor_id,
                    totp=int(done.totp),
                    passkeys=done.passkeys,
                ),
                self._auditor.event(
                    AuditType.SESSIONS_REVOKED,
                    ctx,
                    user_id=user.id,
                    actor_id=actor_id,
                    reason=RevokeReason.ADMIN,
                    sessions=[s.id for s in done.sessions],
                ),
                *self._lifecycle.queued_audit(ctx, [mail]),
            ]

        done = await self._store.reset(
            user.id,
            self._clock.now(),
            origin=self._sessions.node_id,
            revoke_reason=RevokeReason.ADMIN,
            audit=audit,
            mail=[mail],
        )
        await self._sessions.after_revoke(done.sessions)
        await self._lifecycle.mail_queued([mail])
        await self._lifecycle.announce(
            user.id,
            "security.mfa_reset",
            {"totp": int(done.totp), "passkeys": done.passkeys, "revoked": len(done.sessions)},
        )
        return done, mail
