"""merge parallel work

Revision ID: 0003
Revises: 0002_access, 0002_audit, 0002_identity, 0002_keys
Create Date: 2026-11-29 15:10:03.809859
"""

from __future__ import annotations


revision = "0003"
down_revision = ("0002_access", "0002_audit", "0002_identity", "0002_keys")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
