"""Foundation: users, sessions, audit trail, control feed.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from watchword.stores.sql.types import BigIntId, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("email", sa.String(254), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("first_name", sa.String(200)),
        sa.Column("last_name", sa.String(200)),
        sa.Column("roles", sa.JSON, nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "user_id", sa.String(36), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("secret_hash", sa.String(64), unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("last_seen_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.Column("idle_timeout_seconds", sa.Integer, nullable=False),
        sa.Column("device_name", sa.String(100)),
        sa.Column("user_agent", sa.String(512)),
        sa.Column("ip", sa.String(64)),
        sa.Column("revoked_at", UTCDateTime),
        sa.Column("revoked_reason", sa.String(32)),
    )
    op.create_index("ix_sessions_user_live", "sessions", ["user_id", "revoked_at"])
    op.create_index("ix_sessions_expires_at", "sessions", ["expires_at"])
    op.create_table(
        "audit_events",
        sa.Column("id", BigIntId, primary_key=True, autoincrement=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("user_id", sa.String(36)),
        sa.Column("session_id", sa.String(36)),
        sa.Column("actor_id", sa.String(64)),
        sa.Column("ip", sa.String(64)),
        sa.Column("user_agent", sa.String(512)),
        sa.Column("details", sa.JSON, nullable=False),
    )
    op.create_index("ix_audit_user", "audit_events", ["user_id", "id"])
    op.create_table(
        "control_log",
        sa.Column("id", BigIntId, primary_key=True, autoincrement=True),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("origin", sa.String(64), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
    )
    op.create_index("ix_control_log_at", "control_log", ["at"])


def downgrade() -> None:
    op.drop_table("control_log")
    op.drop_table("audit_events")
    op.drop_table("sessions")
    op.drop_table("users")
