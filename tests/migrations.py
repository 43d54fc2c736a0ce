"""Tests' helper: move a database to an Alembic revision, up or down."""

from __future__ import annotations

from alembic import command
from sqlalchemy import Engine

from rempart.store.migrate import _config


def migrate_to(engine: Engine, target: str, *, down: bool) -> None:
    cfg = _config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, target)
