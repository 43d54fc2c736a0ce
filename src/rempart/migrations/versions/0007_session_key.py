"""sessions remember whether the account holds a security key and when it was last presented

Revision ID: 0007_session_key
Revises: 0006_care_link_actor_kind

An account holding a security key signs in with it or, failing that, with its TOTP code; an
infostealer can carry the password and the TOTP secret away, not the key. `keyed` marks the
sessions of such accounts, `key_at` when the key was last presented in the session (0: never):
a fresh factor, for those sessions, is a fresh key, and a refusal of patient data to one that
never presented it asks for the key before any more data (guard, `unconfirmed`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_session_key"
down_revision = "0006_care_link_actor_kind"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("session", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("keyed", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column("key_at", sa.BigInteger(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("session", schema=None) as batch_op:
        batch_op.drop_column("key_at")
        batch_op.drop_column("keyed")
