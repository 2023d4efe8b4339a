"""Second factors: TOTP secrets (sealed by the master key), recovery codes and the sign-in
challenges that wait for a second factor (both stored as SHA-256 digests).

Revision ID: 0005_totp
Revises: 0004_account_lifecycle
"""

import sqlalchemy as sa
from alembic import op

from watchword.stores.sql.types import UTCDateTime

revision = "0005_totp"
down_revision = "0004_account_lifecycle"
branch_labels = None
depends_on = None


def _user_id() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        "user_id", sa.String(36), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "user_totp",
        sa.Column(
            "user_id",
            sa.String(36),
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("secret_sealed", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("confirmed_at", UTCDateTime),
        sa.Column("last_step", sa.BigInteger),
    )
    op.create_table(
        "recovery_codes",
        sa.Column("code_hash", sa.String(64), primary_key=True),
        _user_id(),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("used_at", UTCDateTime),
    )
    op.create_index("ix_recovery_codes_user", "recovery_codes", ["user_id"])
    op.create_table(
        "mfa_challenges",
        sa.Column("challenge_hash", sa.String(64), primary_key=True),
        _user_id(),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("device_name", sa.String(100)),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.Column("used_at", UTCDateTime),
    )
    op.create_index("ix_mfa_challenges_user", "mfa_challenges", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_mfa_challenges_user", "mfa_challenges")
    op.drop_table("mfa_challenges")
    op.drop_index("ix_recovery_codes_user", "recovery_codes")
    op.drop_table("recovery_codes")
    op.drop_table("user_totp")
