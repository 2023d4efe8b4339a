"""Every failure the domain can name, each with a stable wire ``code``.

    WatchwordError
    +-- InvalidInput            the request is malformed or breaks a rule
    |   +-- WeakPassword        the password policy refused it
    |   +-- InvalidEmail
    |   +-- InvalidAccountToken a mailed link's token is unknown, used, superseded or expired
    |   +-- InvalidPasskeyRegistration  a passkey's registration response does not verify
    +-- NotAuthenticated        no credential where one is needed
    |   +-- ReauthRequired      the sign-in is older than the step-up limit
    |   +-- MfaCodeRequired     the step-up needs the second factor's code
    +-- InvalidCredentials      sign-in failed (same answer for unknown user and bad password)
    |   +-- InvalidMfaCode      a wrong or replayed TOTP or recovery code
    |   +-- InvalidMfaChallenge a sign-in challenge that is unknown, used or expired
    |   +-- InvalidPasskey      a passkey response that does not verify, or an unknown passkey
    +-- InvalidCredential       a presented cookie, token or key is bad, expired or revoked
    +-- Forbidden               authenticated, but not allowed
    |   +-- InsufficientScope
    |   +-- SessionRequired     the operation needs a person's live session
    |   +-- CsrfRejected
    |   +-- AccountDisabled
    |   +-- RegistrationClosed
    |   +-- EmailNotVerified
    |   +-- MfaRequired         the role needs a session signed in with a second factor
    |   +-- MfaEnrolmentRequired  the role needs a second factor and the user has none yet
    +-- NotFound
    +-- Conflict
    |   +-- EmailTaken
    |   +-- PasskeyExists       this authenticator's credential is already registered
    |   +-- SessionLimitReached
    +-- RateLimited             too many attempts; ``retry_after`` seconds
    +-- StoreUnavailable        a backing store is down: fail closed

``web/`` alone maps codes to HTTP statuses and bodies.
"""

from __future__ import annotations


class WatchwordError(Exception):
    """Base of every domain error."""

    code = "error"
    default_message = "Something went wrong."

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


class InvalidInput(WatchwordError):
    """The input is malformed or breaks a rule."""

    code = "invalid_request"
    default_message = "The request is not valid."


class WeakPassword(InvalidInput):
    """The password policy refused the password."""

    code = "weak_password"


class InvalidEmail(InvalidInput):
    """The email address is not usable."""

    code = "invalid_email"
    default_message = "The email address is not valid."


class InvalidAccountToken(InvalidInput):
    """A mailed token (verification, reset) is unknown, used, superseded or expired."""

    code = "invalid_token"
    default_message = (
        "This link is not valid (it may be used, replaced by a newer one, or expired)."
    )


class InvalidPasskeyRegistration(InvalidInput):
    """The registration response does not verify (origin, relying party, challenge...)."""

    code = "invalid_passkey_registration"
    default_message = "This passkey could not be registered: start again."


class NotAuthenticated(WatchwordError):
    """No credential was presented where one is needed."""

    code = "unauthenticated"
    default_message = "Authentication is required."


class ReauthRequired(NotAuthenticated):
    """The operation needs a recent sign-in: confirm the password (``POST /v1/auth/reauth``)."""

    code = "reauth_required"
    default_message = "Confirm your password to continue (POST /v1/auth/reauth)."


class InvalidCredentials(WatchwordError):
    """Sign-in failed: one answer for an unknown account and a wrong password."""

    code = "invalid_credentials"
    default_message = "The email or password is incorrect."


class InvalidMfaCode(InvalidCredentials):
    """The TOTP or recovery code is wrong, or was already used."""

    code = "invalid_mfa_code"
    default_message = "The code is incorrect or was already used."


class InvalidMfaChallenge(InvalidCredentials):
    """The sign-in challenge is unknown, used or expired: sign in again."""

    code = "invalid_challenge"
    default_message = "This sign-in has expired or was already completed: sign in again."


class InvalidPasskey(InvalidCredentials):
    """The passkey response does not verify, its challenge is unknown, used or expired, or
    the passkey is unknown or removed (one answer for all: the audit trail says which)."""

    code = "invalid_passkey"
    default_message = "This passkey could not be verified: try again."


class MfaCodeRequired(NotAuthenticated):
    """A second factor is on: the step-up needs its code too."""

    code = "mfa_code_required"
    default_message = "Give the code from your authenticator app (or a recovery code)."


class InvalidCredential(WatchwordError):
    """A presented credential is malformed, forged, expired or revoked."""

    code = "invalid_credential"
    default_message = "The credential is not valid."

    def __init__(self, message: str | None = None, *, code: str | None = None) -> None:
        super().__init__(message)
        if code:
            self.code = code


class Forbidden(WatchwordError):
    """Authenticated, but not allowed to do this."""

    code = "forbidden"
    default_message = "You are not allowed to do this."


class InsufficientScope(Forbidden):
    """The credential lacks a scope the operation needs (RFC 6750 section 3.1)."""

    code = "insufficient_scope"

    def __init__(self, missing: frozenset[str] | set[str], *, challenge: bool = True) -> None:
        self.missing = frozenset(missing)
        # A ``WWW-Authenticate: Bearer`` challenge only speaks to bearer and API-key callers.
        self.challenge = challenge
        super().__init__("Missing scope: " + " ".join(sorted(self.missing)) + ".")


class SessionRequired(Forbidden):
    """Only a person's live session (cookie, or an access token naming it) may do this."""

    code = "session_required"
    default_message = (
        "This operation changes how the account signs in: it needs a session cookie or an "
        "access token of a live session, not an API key, client token or signed request."
    )


class CsrfRejected(Forbidden):
    """A cookie-authenticated unsafe request lacked a valid CSRF token or origin."""

    code = "csrf_failed"
    default_message = "CSRF check failed."


class AccountDisabled(Forbidden):
    """The account is disabled."""

    code = "account_disabled"
    default_message = "This account is disabled."


class RegistrationClosed(Forbidden):
    """Self-service registration is switched off."""

    code = "registration_closed"
    default_message = "Registration is closed on this server."


class EmailNotVerified(Forbidden):
    """Sign-in needs a verified email address on this server."""

    code = "email_not_verified"
    default_message = "Verify your email address first: follow the link we sent you."


class MfaRequired(Forbidden):
    """The route's role needs a session signed in with a second factor."""

    code = "mfa_required"
    default_message = "Sign in with a second factor (TOTP) to use this."


class MfaEnrolmentRequired(Forbidden):
    """The user's role needs a second factor and none is on: only enrolling one is allowed."""

    code = "mfa_enrolment_required"
    default_message = (
        "Your role needs a second factor: add one (TOTP or a passkey) before anything else."
    )


class NotFound(WatchwordError):
    """No such thing, or not yours to see."""

    code = "not_found"
    default_message = "Not found."


class Conflict(WatchwordError):
    """The request conflicts with the current state."""

    code = "conflict"
    default_message = "The request conflicts with the current state."


class PasskeyExists(Conflict):
    """The authenticator's credential is already registered (to this or another account)."""

    code = "passkey_exists"
    default_message = "This passkey is already registered."


class MfaAlreadyEnabled(Conflict):
    """TOTP is already on: remove it before enrolling another secret."""

    code = "mfa_already_enabled"
    default_message = "TOTP is already on: remove it first (DELETE /v1/me/mfa/totp)."


class EmailTaken(Conflict):
    """Another account already uses this email address."""

    code = "email_taken"
    default_message = "An account with this email address already exists."


class SessionLimitReached(Conflict):
    """The account already has its maximum number of live sessions."""

    code = "session_limit_reached"
    default_message = "Too many active sessions: sign out another device first."


class RateLimited(WatchwordError):
    """Too many attempts; try again after ``retry_after`` seconds."""

    code = "rate_limited"
    default_message = "Too many attempts. Try again later."

    def __init__(self, retry_after: int, message: str | None = None) -> None:
        self.retry_after = max(1, int(retry_after))
        super().__init__(message)


class StoreUnavailable(WatchwordError):
    """A backing store cannot be reached: the server fails closed."""

    code = "service_unavailable"
    default_message = "A backing store is unavailable. Try again shortly."
