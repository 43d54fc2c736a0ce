"""Helpers for the audit tests: records, a filled log, and the DBA's powers (triggers off)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import Connection, text

from rempart.audit.factory import open_audit
from rempart.audit.log import AuditLog
from rempart.audit.records import AuditRecord
from rempart.store.keyring import DIRECTORY_OWNER
from rempart.wiring import Services

AUDIT_TABLES = ("audit_event", "audit_node", "audit_batch", "audit_head", "audit_prune")


def make_record(i: int, **fields: object) -> AuditRecord:
    values: dict[str, object] = {
        "action": "read",
        "outcome": "success",
        "ip": "10.0.0.1",
        "user_agent": "pytest",
        "account_id": f"acct-{i % 3}",
        "username": f"user{i % 3}",
        "role": "clinician",
        "resource_type": "Observation",
        "resource_id": f"obs-{i}",
        "patient": f"pat-{i % 7}",
        "reason": "care relationship",
    }
    values.update(fields)
    return AuditRecord(**values)  # type: ignore[arg-type]


def second_log(services: Services) -> AuditLog:
    """The same log opened again, as another process appending to it would."""
    return open_audit(
        services.settings,
        services.engine,
        services.provider,
        services.keyring.ensure(DIRECTORY_OWNER),
    )


def disable_triggers(conn: Connection) -> None:
    """What a DBA with full rights can do: the triggers are a speed bump, not the guarantee."""
    if conn.dialect.name == "postgresql":
        for table in AUDIT_TABLES:
            conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        return
    for table in AUDIT_TABLES:
        conn.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_update"))
        conn.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_delete"))


@pytest.fixture
def filled(services: Services) -> Callable[..., Services]:
    """fill(n, heads_every=k): n records, a signed head after every k."""

    def fill(n: int, heads_every: int = 100) -> Services:
        done = 0
        while done < n:
            step = min(heads_every, n - done)
            services.audit.record(*(make_record(done + i) for i in range(step)))
            done += step
            services.audit.sign_now()
        return services

    return fill
