"""The schema as SQLAlchemy Core tables. Alembic migrations are the history of this file."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
)

from watchword.stores.sql.types import BigIntId, UTCDateTime

metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("email", String(254), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("first_name", String(200)),
    Column("last_name", String(200)),
    Column("roles", JSON, nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("secret_hash", String(64), unique=True),
    Column("kind", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_seen_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("idle_timeout_seconds", Integer, nullable=False),
    Column("device_name", String(100)),
    Column("user_agent", String(512)),
    Column("ip", String(64)),
    Column("revoked_at", UTCDateTime),
    Column("revoked_reason", String(32)),
    Index("ix_sessions_user_live", "user_id", "revoked_at"),
    Index("ix_sessions_expires_at", "expires_at"),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", BigIntId, primary_key=True, autoincrement=True),
    Column("type", String(64), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("user_id", String(36)),
    Column("session_id", String(36)),
    Column("actor_id", String(64)),
    Column("ip", String(64)),
    Column("user_agent", String(512)),
    Column("details", JSON, nullable=False),
    Index("ix_audit_user", "user_id", "id"),
)

# -- tables of later issues follow the foundation's, each in its own block ------------------

control_log = Table(
    "control_log",
    metadata,
    Column("id", BigIntId, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("origin", String(64), nullable=False),
    Column("payload", JSON, nullable=False),
    Index("ix_control_log_at", "at"),
)

# -- machines: API keys, signing keys, OAuth2 clients, opaque tokens ---------------

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("public_id", String(16), nullable=False, unique=True),
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(100), nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("scopes", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime),
    Column("last_used_at", UTCDateTime),
    Column("revoked_at", UTCDateTime),
    Index("ix_api_keys_user", "user_id"),
)

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(100), nullable=False),
    Column("algorithm", String(16), nullable=False),
    Column("material", String(512), nullable=False),
    Column("scopes", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_used_at", UTCDateTime),
    Column("revoked_at", UTCDateTime),
    Index("ix_signing_keys_user", "user_id"),
)

oauth_clients = Table(
    "oauth_clients",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("scopes", JSON, nullable=False),
    Column("token_format", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
)

opaque_tokens = Table(
    "opaque_tokens",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column(
        "client_id",
        String(40),
        ForeignKey("oauth_clients.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("scopes", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime),
    Index("ix_opaque_tokens_expires_at", "expires_at"),
)


# -- tokens: JWT signing keys, refresh tokens, revoked access tokens ----------------

token_keys = Table(
    "token_keys",
    metadata,
    Column("kid", String(64), primary_key=True),
    # The newest generation signs; unique, so concurrent first starts create one key.
    Column("generation", Integer, nullable=False, unique=True),
    Column("algorithm", String(16), nullable=False),
    Column("private_sealed", Text, nullable=False),
    Column("public_jwk", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("retired_at", UTCDateTime),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("session_id", String(36), ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("state", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("rotated_at", UTCDateTime),
    Column("successor_sealed", Text),
    Index("ix_refresh_tokens_session", "session_id"),
)

revoked_tokens = Table(
    "revoked_tokens",
    metadata,
    Column("jti", String(128), primary_key=True),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=False),
    Index("ix_revoked_tokens_expires_at", "expires_at"),
)

# A starting node reads the sessions revoked within the last access-token lifetime.
Index("ix_sessions_revoked_at", sessions.c.revoked_at)

# -- account lifecycle: verified addresses, mailed tokens, the mail outbox -------------------

users.append_column(Column("email_verified_at", UTCDateTime))

account_tokens = Table(
    "account_tokens",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("purpose", String(32), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("email", String(254), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("used_at", UTCDateTime),
    Index("ix_account_tokens_user", "user_id", "purpose"),
)

# When and how a session last proved its user (RFC 8176 ``amr``); absent: at its creation, by
# password.
session_auth = Table(
    "session_auth",
    metadata,
    Column(
        "session_id", String(36), ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("auth_time", UTCDateTime, nullable=False),
    Column("amr", JSON, nullable=False),
)

mail_outbox = Table(
    "mail_outbox",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("user_id", String(36)),
    Column("to_address", String(254), nullable=False),
    Column("subject", String(300), nullable=False),
    Column("text_body", Text, nullable=False),
    Column("html_body", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    Column("last_error", String(500)),
    Index("ix_mail_outbox_due", "sent_at", "next_attempt_at"),
)

# -- second factors: TOTP secrets (sealed), recovery codes and sign-in challenges (digests)
user_totp = Table(
    "user_totp",
    metadata,
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("secret_sealed", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("confirmed_at", UTCDateTime),
    Column("last_step", BigInteger),
)

recovery_codes = Table(
    "recovery_codes",
    metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("used_at", UTCDateTime),
    Index("ix_recovery_codes_user", "user_id"),
)

mfa_challenges = Table(
    "mfa_challenges",
    metadata,
    Column("challenge_hash", String(64), primary_key=True),
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("mode", String(8), nullable=False),
    Column("device_name", String(100)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("used_at", UTCDateTime),
    Index("ix_mfa_challenges_user", "user_id"),
)

# -- passkeys: WebAuthn credentials and the server-side challenges of their ceremonies (digests)
passkeys = Table(
    "passkeys",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    # base64url of up to 1023 bytes (WebAuthn's limit for a credential id)
    Column("credential_id", String(1400), nullable=False, unique=True),
    Column("public_key", Text, nullable=False),  # base64url of the COSE key
    Column("sign_count", BigInteger, nullable=False),
    Column("name", String(100), nullable=False),
    Column("transports", JSON, nullable=False),
    Column("backed_up", Boolean, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_used_at", UTCDateTime),
    Index("ix_passkeys_user", "user_id"),
)

passkey_challenges = Table(
    "passkey_challenges",
    metadata,
    Column("challenge_hash", String(64), primary_key=True),
    Column("purpose", String(16), nullable=False),
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE")),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("used_at", UTCDateTime),
    Index("ix_passkey_challenges_expiry", "expires_at"),
)


# -- OpenID Connect: apps that sign people in, their grants, consents, ID-token keys, and the
# back-channel logout outbox
oauth_clients.append_column(
    Column("client_type", String(16), nullable=False, server_default="confidential")
)
oauth_clients.append_column(
    Column("grant_types", JSON, nullable=False, server_default='["client_credentials"]')
)
oauth_clients.append_column(Column("redirect_uris", JSON, nullable=False, server_default="[]"))
oauth_clients.append_column(Column("first_party", Boolean, nullable=False, server_default=false()))
oauth_clients.append_column(Column("backchannel_logout_uri", String(2048)))
oauth_clients.append_column(
    Column("post_logout_redirect_uris", JSON, nullable=False, server_default="[]")
)
oauth_clients.append_column(
    Column("id_token_alg", String(16), nullable=False, server_default="RS256")
)

# The app grant a refresh token belongs to (None: the person's own, first-party family).
refresh_tokens.append_column(Column("grant_id", String(36)))

# One authorization: the code (as SHA-256, single use) and, once redeemed, the tokens issued
# from it. Ends with its session (cascade) or when revoked (code reuse, disconnect).
app_grants = Table(
    "app_grants",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("code_hash", String(64), nullable=False, unique=True),
    Column(
        "client_id", String(40), ForeignKey("oauth_clients.id", ondelete="CASCADE"), nullable=False
    ),
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("session_id", String(36), ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
    Column("redirect_uri", String(2048), nullable=False),
    Column("scopes", JSON, nullable=False),
    Column("nonce", String(512)),
    Column("code_challenge", String(128)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("code_expires_at", UTCDateTime, nullable=False),
    Column("code_used_at", UTCDateTime),
    Column("revoked_at", UTCDateTime),
    # [[jti, exp], ...] of the access tokens issued under the grant, to revoke them early.
    Column("access_tokens", JSON, nullable=False),
    Index("ix_app_grants_session", "session_id"),
    Index("ix_app_grants_user", "user_id", "client_id"),
)

app_consents = Table(
    "app_consents",
    metadata,
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column(
        "client_id",
        String(40),
        ForeignKey("oauth_clients.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("scopes", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# RS256 keys for ID tokens (every relying-party library verifies RS256), beside the access
# token keys of whatever WATCHWORD_JWT_ALGORITHM says; both are in the JWKS.
id_token_keys = Table(
    "id_token_keys",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("generation", Integer, nullable=False, unique=True),
    Column("algorithm", String(16), nullable=False),
    Column("private_sealed", Text, nullable=False),
    Column("public_jwk", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("retired_at", UTCDateTime),
)

logout_outbox = Table(
    "logout_outbox",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("client_id", String(40), nullable=False),
    Column("session_id", String(36), nullable=False),
    Column("user_id", String(36), nullable=False),
    Column("uri", String(2048), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    Column("last_error", String(500)),
    Index("ix_logout_outbox_due", "sent_at", "next_attempt_at"),
)
