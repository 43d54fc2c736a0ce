"""the guard's counters, baselines, decoy tags and containments (issue #7)

Revision ID: 0004_guard
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_guard"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "guard_touch",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("patient", sa.String(length=64), nullable=True),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_guard_touch")),
    )
    with op.batch_alter_table("guard_touch", schema=None) as batch_op:
        batch_op.create_index("ix_guard_touch_account_at", ["account_id", "at"], unique=False)
        batch_op.create_index("ix_guard_touch_at", ["at"], unique=False)

    op.create_table(
        "guard_daily",
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("peer", sa.String(length=120), nullable=False),
        sa.Column("patients", sa.Integer(), nullable=False),
        sa.Column("hours", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "day", name=op.f("pk_guard_daily")),
    )
    with op.batch_alter_table("guard_daily", schema=None) as batch_op:
        batch_op.create_index("ix_guard_daily_peer_day", ["peer", "day"], unique=False)

    op.create_table(
        "guard_decoy",
        sa.Column("tag", sa.LargeBinary(length=16), nullable=False),
        sa.Column("planted", sa.BigInteger(), nullable=False),
        sa.Column("origin", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("tag", name=op.f("pk_guard_decoy")),
    )

    op.create_table(
        "guard_containment",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=True),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("signal", sa.String(length=32), nullable=False),
        sa.Column("message", sa.String(length=500), nullable=False),
        sa.Column("released_at", sa.BigInteger(), nullable=True),
        sa.Column("released_by", sa.String(length=64), nullable=True),
        sa.Column("released_reason", sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_guard_containment")),
    )
    with op.batch_alter_table("guard_containment", schema=None) as batch_op:
        batch_op.create_index("ix_guard_containment_account", ["account_id", "at"], unique=False)
        batch_op.create_index("ix_guard_containment_open", ["level", "released_at"], unique=False)

    op.create_table(
        "guard_fired",
        sa.Column("scope", sa.String(length=80), nullable=False),
        sa.Column("signal", sa.String(length=32), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "signal", name=op.f("pk_guard_fired")),
    )

    op.create_table(
        "guard_reset",
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("since", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_guard_reset")),
    )


def downgrade() -> None:
    op.drop_table("guard_reset")
    op.drop_table("guard_fired")
    with op.batch_alter_table("guard_containment", schema=None) as batch_op:
        batch_op.drop_index("ix_guard_containment_open")
        batch_op.drop_index("ix_guard_containment_account")
    op.drop_table("guard_containment")
    op.drop_table("guard_decoy")
    with op.batch_alter_table("guard_daily", schema=None) as batch_op:
        batch_op.drop_index("ix_guard_daily_peer_day")
    op.drop_table("guard_daily")
    with op.batch_alter_table("guard_touch", schema=None) as batch_op:
        batch_op.drop_index("ix_guard_touch_at")
        batch_op.drop_index("ix_guard_touch_account_at")
    op.drop_table("guard_touch")
