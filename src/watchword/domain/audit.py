"""The audit trail: who did what, when, from where. Never a secret."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class AuditType:
    LOGIN_SUCCEEDED = "login.succeeded"
    LOGIN_FAILED = "login.failed"
    LOGIN_RATE_LIMITED = "login.rate_limited"
    LOGOUT = "logout"
    SESSION_REVOKED = "session.revoked"
    SESSIONS_REVOKED = "sessions.revoked"
    SESSION_EVICTED = "session.evicted"
    PASSWORD_CHANGED = "password.changed"
    USER_REGISTERED = "user.registered"
    USER_UPDATED = "admin.user_updated"
    USER_DISABLED = "admin.user_disabled"
    USER_DELETED = "admin.user_deleted"
    ADMIN_SESSIONS_REVOKED = "admin.sessions_revoked"
    REFRESH_REUSE = "token.refresh_reuse"
    TOKEN_REFRESHED = "token.refreshed"
    CREDENTIAL_USED = "credential.used"
    CREDENTIAL_REJECTED = "credential.rejected"
    # -- machines
    CREDENTIAL_CREATED = "credential.created"
    CREDENTIAL_REVOKED = "credential.revoked"
    CREDENTIAL_UPDATED = "credential.updated"
    CREDENTIAL_RATE_LIMITED = "credential.rate_limited"
    # -- account lifecycle: mail, verification, password reset
    MAIL_QUEUED = "mail.queued"
    MAIL_SENT = "mail.sent"
    EMAIL_VERIFICATION_SENT = "email.verification_sent"
    EMAIL_VERIFIED = "email.verified"
    EMAIL_CHANGE_REQUESTED = "email.change_requested"
    EMAIL_CHANGED = "email.changed"
    PASSWORD_RESET_REQUESTED = "password.reset_requested"
    PASSWORD_RESET = "password.reset"
    STEP_UP = "login.step_up"
    # -- second factors: TOTP and recovery codes
    MFA_ENROLMENT_STARTED = "mfa.enrolment_started"
    MFA_ADDED = "mfa.factor_added"
    MFA_REMOVED = "mfa.factor_removed"
    MFA_CHALLENGED = "login.mfa_challenged"
    MFA_FAILED = "mfa.challenge_failed"
    RECOVERY_CODE_USED = "mfa.recovery_code_used"
    RECOVERY_CODES_REPLACED = "mfa.recovery_codes_replaced"
    # -- passkeys (added and removed are MFA_ADDED / MFA_REMOVED with method "passkey")
    PASSKEY_USED = "passkey.used"
    PASSKEY_FAILED = "passkey.failed"
    PASSKEY_RENAMED = "passkey.renamed"
    MFA_RESET = "admin.mfa_reset"


@dataclass(frozen=True, slots=True)
class AuditEvent:
    type: str
    at: datetime
    user_id: str | None = None
    session_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    actor_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    id: int | None = None

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "at": self.at.isoformat(),
            "user_id": self.user_id,
            "session_id": self.session_id,
            "ip": self.ip,
            "user_agent": self.user_agent,
            "actor_id": self.actor_id,
            "details": self.details,
        }
