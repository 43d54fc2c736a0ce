"""Alembic environment: the URL comes from the caller (rempart init) or REMPART_DATABASE_URL."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection

import rempart.alerts  # noqa: F401, RUF100  (registers security_alert)
import rempart.access.tables  # noqa: F401, RUF100  (registers the access tables)
import rempart.identity.tables  # noqa: F401, RUF100  (registers its tables on the shared metadata)
import rempart.audit.tables  # noqa: F401, RUF100  (registers the audit tables)
import rempart.store.shred  # noqa: F401, RUF100  (registers erased_owner)
import rempart.guard.tables  # noqa: F401, RUF100  (registers the guard tables)
from rempart.store.db import make_engine
from rempart.store.tables import metadata

config = context.config
target_metadata = metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("REMPART_DATABASE_URL")
    if not url:
        raise SystemExit("set REMPART_DATABASE_URL (or pass a URL) to run migrations")
    engine = make_engine(url, pool_size=1)
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run against a database")
run_migrations_online()
