"""OpenID Connect: what apps register (type, redirect URIs, grants, logout URIs), the grants
and consents of people who signed in to them, RS256 ID-token keys, the app grant a refresh
token belongs to, and the back-channel logout outbox.

Revision ID: 0007_oidc
Revises: 0002, 0006_passkeys
"""

import sqlalchemy as sa
from alembic import op

from watchword.stores.sql.types import UTCDateTime

revision = "0007_oidc"
# Needs the token tables (0002) and the machine clients (0003 onwards): joins both lines.
down_revision = ("0002", "0006_passkeys")
branch_labels = None
depends_on = None

CLIENT_COLUMNS = (
    # Existing clients keep what they were: confidential, client credentials only.
    sa.Column("client_type", sa.String(16), nullable=False, server_default="confidential"),
    sa.Column("grant_types", sa.JSON, nullable=False, server_default='["client_credentials"]'),
    sa.Column("redirect_uris", sa.JSON, nullable=False, server_default="[]"),
    sa.Column("first_party", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("backchannel_logout_uri", sa.String(2048)),
    sa.Column("post_logout_redirect_uris", sa.JSON, nullable=False, server_default="[]"),
    sa.Column("id_token_alg", sa.String(16), nullable=False, server_default="RS256"),
)


def upgrade() -> None:
    # Plain ADD COLUMNs: SQLite needs no table rebuild (which would cascade).
    for column in CLIENT_COLUMNS:
        op.add_column("oauth_clients", column)
    op.add_column("refresh_tokens", sa.Column("grant_id", sa.String(36), nullable=True))
    op.create_table(
        "app_grants",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("code_hash", sa.String(64), nullable=False, unique=True),
        sa.Column(
            "client_id",
            sa.String(40),
            sa.ForeignKey("oauth_clients.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "user_id", sa.String(36), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column(
            "session_id",
            sa.String(36),
            sa.ForeignKey("sessions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("redirect_uri", sa.String(2048), nullable=False),
        sa.Column("scopes", sa.JSON, nullable=False),
        sa.Column("nonce", sa.String(512)),
        sa.Column("code_challenge", sa.String(128)),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("code_expires_at", UTCDateTime, nullable=False),
        sa.Column("code_used_at", UTCDateTime),
        sa.Column("revoked_at", UTCDateTime),
        sa.Column("access_tokens", sa.JSON, nullable=False),
    )
    op.create_index("ix_app_grants_session", "app_grants", ["session_id"])
    op.create_index("ix_app_grants_user", "app_grants", ["user_id", "client_id"])
    op.create_table(
        "app_consents",
        sa.Column(
            "user_id",
            sa.String(36),
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "client_id",
            sa.String(40),
            sa.ForeignKey("oauth_clients.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("scopes", sa.JSON, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "id_token_keys",
        sa.Column("kid", sa.String(64), primary_key=True),
        sa.Column("generation", sa.Integer, nullable=False, unique=True),
        sa.Column("algorithm", sa.String(16), nullable=False),
        sa.Column("private_sealed", sa.Text, nullable=False),
        sa.Column("public_jwk", sa.JSON, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("retired_at", UTCDateTime),
    )
    op.create_table(
        "logout_outbox",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("client_id", sa.String(40), nullable=False),
        sa.Column("session_id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("uri", sa.String(2048), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", UTCDateTime, nullable=False),
        sa.Column("sent_at", UTCDateTime),
        sa.Column("last_error", sa.String(500)),
    )
    op.create_index("ix_logout_outbox_due", "logout_outbox", ["sent_at", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_logout_outbox_due", "logout_outbox")
    op.drop_table("logout_outbox")
    op.drop_table("id_token_keys")
    op.drop_table("app_consents")
    op.drop_index("ix_app_grants_user", "app_grants")
    op.drop_index("ix_app_grants_session", "app_grants")
    op.drop_table("app_grants")
    with op.batch_alter_table("refresh_tokens") as batch:
        batch.drop_column("grant_id")
    with op.batch_alter_table("oauth_clients") as batch:
        for column in reversed(CLIENT_COLUMNS):
            batch.drop_column(column.name)
