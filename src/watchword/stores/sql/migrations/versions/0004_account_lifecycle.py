"""Account lifecycle: verified addresses, mailed single-use tokens, the mail outbox, and when
each session last proved its user (step-up).

Revision ID: 0004_account_lifecycle
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

from watchword.stores.sql.types import UTCDateTime

revision = "0004_account_lifecycle"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN (nullable): SQLite needs no table rebuild, which would cascade.
    op.add_column("users", sa.Column("email_verified_at", UTCDateTime, nullable=True))
    op.create_table(
        "account_tokens",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "user_id", sa.String(36), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.Column("used_at", UTCDateTime),
    )
    op.create_index("ix_account_tokens_user", "account_tokens", ["user_id", "purpose"])
    op.create_table(
        "session_auth",
        sa.Column(
            "session_id",
            sa.String(36),
            sa.ForeignKey("sessions.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("auth_time", UTCDateTime, nullable=False),
        sa.Column("amr", sa.JSON, nullable=False),
    )
    op.create_table(
        "mail_outbox",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(36)),
        sa.Column("to_address", sa.String(254), nullable=False),
        sa.Column("subject", sa.String(300), nullable=False),
        sa.Column("text_body", sa.Text, nullable=False),
        sa.Column("html_body", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", UTCDateTime, nullable=False),
        sa.Column("sent_at", UTCDateTime),
        sa.Column("last_error", sa.String(500)),
    )
    op.create_index("ix_mail_outbox_due", "mail_outbox", ["sent_at", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_mail_outbox_due", "mail_outbox")
    op.drop_table("mail_outbox")
    op.drop_table("session_auth")
    op.drop_index("ix_account_tokens_user", "account_tokens")
    op.drop_table("account_tokens")
    op.drop_column("users", "email_verified_at")
