"""security alerts and crypto-shredding tombstones

Revision ID: 0002_keys
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_keys"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "security_alert",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("message", sa.String(length=500), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("acknowledged", sa.BigInteger(), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_security_alert")),
    )
    with op.batch_alter_table("security_alert", schema=None) as batch_op:
        batch_op.create_index("ix_security_alert_created", ["created"], unique=False)

    op.create_table(
        "erased_owner",
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("erased", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("owner", name=op.f("pk_erased_owner")),
    )
    with op.batch_alter_table("erased_owner", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_erased_owner_erased"), ["erased"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("erased_owner", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_erased_owner_erased"))
    op.drop_table("erased_owner")
    with op.batch_alter_table("security_alert", schema=None) as batch_op:
        batch_op.drop_index("ix_security_alert_created")
    op.drop_table("security_alert")
