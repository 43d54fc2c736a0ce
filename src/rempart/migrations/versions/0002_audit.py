"""audit log: append-only Merkle log, signed tree heads, pruning points

Revision ID: 0002_audit
Revises: 0001
Create Date: 2026-11-30 09:00:00

The triggers are the database's own refusal of UPDATE and DELETE on the audit tables (a speed
bump for a DBA with full rights, who can drop them; the signed tree heads kept outside the
database are what catches that). DELETE on audit_event is let through only below the highest
signed pruning point (retention, four-eyes approved; see rempart.audit.retention).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = "0002_audit"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLES = ("audit_event", "audit_node", "audit_batch", "audit_head", "audit_prune")
_MESSAGE = "audit tables are append-only"
# INTEGER PRIMARY KEY on SQLite: the position is the rowid, rows lie in position order.
_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "audit_event",
        sa.Column("seq", _SEQ, autoincrement=False, nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=True),
        sa.Column("role", sa.String(length=32), nullable=True),
        sa.Column("practitioner", sa.String(length=80), nullable=True),
        sa.Column("session_id", sa.String(length=64), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("resource_type", sa.String(length=40), nullable=True),
        sa.Column("resource_id", sa.String(length=64), nullable=True),
        sa.Column("patient", sa.String(length=64), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.Column("user_agent", sa.String(length=256), nullable=False),
        sa.Column("sealed", sa.Text(), nullable=True),
        sa.Column("leaf_hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_event")),
    )
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.create_index(
            "ix_audit_event_account_at",
            ["account_id", "at", "outcome", "patient", "resource_type"],
            unique=False,
        )
        batch_op.create_index("ix_audit_event_at", ["at"], unique=False)
        batch_op.create_index("ix_audit_event_patient_at", ["patient", "at"], unique=False)
    op.create_table(
        "audit_node",
        sa.Column("level", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx", name=op.f("pk_audit_node")),
    )
    op.create_table(
        "audit_batch",
        sa.Column("size", _SEQ, autoincrement=False, nullable=False),
        sa.Column("first", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("frontier", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("size", name=op.f("pk_audit_batch")),
    )
    op.create_table(
        "audit_head",
        sa.Column("tree_size", _SEQ, autoincrement=False, nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("root", sa.LargeBinary(length=32), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("signature", sa.LargeBinary(length=64), nullable=False),
        sa.PrimaryKeyConstraint("tree_size", name=op.f("pk_audit_head")),
    )
    op.create_table(
        "audit_prune",
        sa.Column("size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("cutoff", sa.BigInteger(), nullable=False),
        sa.Column("approval_id", sa.String(length=64), nullable=False),
        sa.Column("frontier", sa.LargeBinary(), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("signature", sa.LargeBinary(length=64), nullable=False),
        sa.PrimaryKeyConstraint("size", name=op.f("pk_audit_prune")),
    )
    if op.get_bind().dialect.name == "postgresql":
        _postgres_triggers()
    else:
        _sqlite_triggers()


def _sqlite_triggers() -> None:
    for table in TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{_MESSAGE}'); END"
        )
        if table == "audit_event":
            op.execute(
                "CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON audit_event "
                "WHEN OLD.seq >= COALESCE((SELECT max(size) FROM audit_prune), 0) "
                "BEGIN SELECT RAISE(ABORT, 'audit tables are append-only'); END"
            )
        else:
            op.execute(
                f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{_MESSAGE}'); END"
            )


def _postgres_triggers() -> None:
    op.execute(
        "CREATE FUNCTION audit_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"RAISE EXCEPTION '{_MESSAGE} (% on %)', TG_OP, TG_TABLE_NAME; END $$"
    )
    op.execute(
        "CREATE FUNCTION audit_event_delete_guard() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF OLD.seq >= COALESCE((SELECT max(size) FROM audit_prune), 0) THEN "
        "RAISE EXCEPTION 'audit tables are append-only (DELETE above the pruning point)'; "
        "END IF; RETURN OLD; END $$"
    )
    for table in TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION audit_refuse()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse()"
        )
        guard = "audit_event_delete_guard" if table == "audit_event" else "audit_refuse"
        op.execute(
            f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {guard}()"
        )


def downgrade() -> None:
    # Dropping a table drops its triggers on both databases.
    for table in reversed(TABLES):
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS audit_event_delete_guard()")
        op.execute("DROP FUNCTION IF EXISTS audit_refuse()")
