"""The security officer's alert queue: what went wrong, stored and logged, without patient content.

An alert is a row in `security_alert` and one JSON line on the `rempart.security` logger, so a
log shipper sees it even when the database write fails. `details` carries identifiers only
(resource type and id, account id, request id, counts): never a name, a note or any decrypted
field, because the queue is read by people and tools outside the care relationship.

The row is written in its own transaction: an alert about a request survives that request's
rollback (the request usually fails *because* of what the alert reports).
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Index,
    String,
    Table,
    Text,
    insert,
    select,
    update,
)
from sqlalchemy.exc import SQLAlchemyError

from rempart.clock import now_micros
from rempart.store.tables import metadata

log = logging.getLogger("rempart.security")

INFO = "info"
WARNING = "warning"
CRITICAL = "critical"
SEVERITIES = (INFO, WARNING, CRITICAL)
_LOG_LEVEL = {INFO: logging.INFO, WARNING: logging.WARNING, CRITICAL: logging.CRITICAL}

MAX_MESSAGE = 500
MAX_DETAIL_VALUE = 200  # long enough for any id; too short to smuggle a document into the queue

SQLITE_WAIT_SECONDS = 2.0

DetailValue = str | int | float | bool | None

security_alert = Table(
    "security_alert",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("created", BigInteger, nullable=False),  # microseconds since the epoch, UTC
    Column("kind", String(64), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("message", String(MAX_MESSAGE), nullable=False),
    Column("details", Text, nullable=False),  # JSON object of identifiers
    Column("acknowledged", BigInteger, nullable=True),
    Column("acknowledged_by", String(36), nullable=True),
)
Index("ix_security_alert_created", security_alert.c.created)


# The database of the store whose keys this thread of work last used. Code that detects an
# integrity failure deep in the decode path (store/codec.py) has no engine at hand; the keyring
# that handed it the key binds its engine here, so the alert lands in the same database as the
# record it concerns, even in a process holding several stores (tests, migrations).
_bound_engine: ContextVar[Engine | None] = ContextVar("rempart_alert_engine", default=None)


def bind_engine(engine: Engine) -> None:
    if _bound_engine.get() is not engine:
        _bound_engine.set(engine)


def raise_bound_alert(kind: str, severity: str, message: str, details: dict[str, Any]) -> None:
    """raise_alert into the bound engine's queue; only the log line if nothing is bound."""
    engine = _bound_engine.get()
    if engine is None:
        _checked_details(details)
        log.log(
            _LOG_LEVEL.get(severity, logging.CRITICAL),
            json.dumps(
                {
                    "event": "security_alert",
                    "kind": kind,
                    "severity": severity,
                    "message": message[:MAX_MESSAGE],
                    "details": details,
                    "stored": False,
                },
                sort_keys=True,
            ),
        )
        return
    raise_alert(engine, kind, severity, message, details)


@dataclass(frozen=True)
class Alert:
    id: str
    created: int
    kind: str
    severity: str
    message: str
    details: dict[str, DetailValue]
    acknowledged: int | None
    acknowledged_by: str | None


def _checked_details(details: dict[str, Any]) -> dict[str, DetailValue]:
    # A programming error, not a runtime condition: fail loudly so a test catches it.
    out: dict[str, DetailValue] = {}
    for key, value in details.items():
        if not isinstance(key, str) or len(key) > 64:
            raise ValueError(f"alert detail keys are short strings, not {key!r}")
        if value is not None and not isinstance(value, str | int | float | bool):
            raise ValueError(f"alert detail {key!r} must be a scalar id or count")
        if isinstance(value, str) and len(value) > MAX_DETAIL_VALUE:
            raise ValueError(f"alert detail {key!r} is too long for an identifier")
        out[key] = value
    return out


def raise_alert(
    engine: Engine, kind: str, severity: str, message: str, details: dict[str, Any]
) -> None:
    """Record an alert for the security officer. Never raises for a storage failure.

    The caller is usually already failing closed with its own error; an alert store that is
    down must not replace that error, so a failed write is logged (the JSON line below is
    emitted first either way) and swallowed.
    """
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, not {severity!r}")
    if not kind or len(kind) > 64:
        raise ValueError("alert kind must be 1 to 64 characters")
    clean = _checked_details(details)
    alert_id = str(uuid.uuid4())
    created = now_micros()
    text = message[:MAX_MESSAGE]
    line = {
        "event": "security_alert",
        "id": alert_id,
        "created": created,
        "kind": kind,
        "severity": severity,
        "message": text,
        "details": clean,
    }
    log.log(_LOG_LEVEL[severity], json.dumps(line, sort_keys=True))
    row = {
        "id": alert_id,
        "created": created,
        "kind": kind,
        "severity": severity,
        "message": text,
        "details": json.dumps(clean, sort_keys=True),
    }
    if engine.dialect.name != "sqlite":
        _store(engine, row)
        return
    # SQLite has one writer: if the caller's own transaction already wrote, an insert from
    # this thread would wait for a lock only the caller can release. Insert from a helper
    # thread and wait briefly; if the caller holds the lock, its rollback (the caller is
    # failing) frees it and the helper's insert goes through after we return.
    helper = threading.Thread(target=_store, args=(engine, row), daemon=True)
    helper.start()
    helper.join(SQLITE_WAIT_SECONDS)


def _store(engine: Engine, row: dict[str, Any]) -> None:
    try:
        with engine.begin() as conn:
            conn.execute(insert(security_alert).values(**row))
    except SQLAlchemyError as exc:
        log.critical(
            json.dumps({"event": "security_alert_not_stored", "id": row["id"], "error": str(exc)})
        )


def list_alerts(
    engine: Engine,
    *,
    limit: int = 100,
    before: int | None = None,
    kind: str | None = None,
    unacknowledged_only: bool = False,
) -> list[Alert]:
    """Newest first. Page with `before` = the `created` of the last alert of the previous page."""
    limit = max(1, min(limit, 1000))
    query = select(security_alert)
    if before is not None:
        query = query.where(security_alert.c.created < before)
    if kind is not None:
        query = query.where(security_alert.c.kind == kind)
    if unacknowledged_only:
        query = query.where(security_alert.c.acknowledged.is_(None))
    query = query.order_by(security_alert.c.created.desc(), security_alert.c.id).limit(limit)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        Alert(
            id=r.id,
            created=r.created,
            kind=r.kind,
            severity=r.severity,
            message=r.message,
            details=json.loads(r.details),
            acknowledged=r.acknowledged,
            acknowledged_by=r.acknowledged_by,
        )
        for r in rows
    ]


def acknowledge_alert(engine: Engine, alert_id: str, account_id: str) -> bool:
    """Mark an alert as handled by `account_id`; False if unknown or already acknowledged."""
    with engine.begin() as conn:
        result = conn.execute(
            update(security_alert)
            .where(security_alert.c.id == alert_id, security_alert.c.acknowledged.is_(None))
            .values(acknowledged=now_micros(), acknowledged_by=account_id)
        )
    return result.rowcount == 1
