"""Who hears about what the access package does.

- The security officer: every break-the-glass grant, every four-eyes request, approval,
  rejection and execution, through the shared alert queue (`rempart.alerts`, issue #6): one row
  per event and a JSON line on the `rempart.security` logger. Identifiers only.
- The person concerned: a reset of their password or factor, a new account, a change of role.
  These notices (`user_notice`) are delivered *out of band* (in production by the hospital's
  mail or SMS relay reading the queue; in the demo by `rempart access notices`), because they
  carry one-time codes that must never appear in an administrator's API response. Their bodies
  are sealed under the directory key.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, select, update

from rempart import alerts
from rempart.access.tables import user_notice
from rempart.clock import now_micros
from rempart.crypto import open_sealed, seal


def alert_officer(
    engine: Engine, kind: str, message: str, details: dict[str, Any], *, warning: bool = False
) -> None:
    severity = alerts.WARNING if warning else alerts.INFO
    alerts.raise_alert(engine, kind, severity, message, details)


def _aad(notice_id: str, account_id: str) -> bytes:
    return f"rempart/notice/{notice_id}/{account_id}".encode()


def notify_user(
    conn: Connection, key: bytes, account_id: str, kind: str, body: dict[str, Any]
) -> str:
    """Queue a message for one account's holder, inside the caller's transaction."""
    notice_id = str(uuid.uuid4())
    conn.execute(
        user_notice.insert().values(
            id=notice_id,
            account_id=account_id,
            kind=kind,
            body_sealed=seal(key, orjson.dumps(body), _aad(notice_id, account_id)),
            created=now_micros(),
            delivered=None,
        )
    )
    return notice_id


@dataclass(frozen=True)
class Notice:
    id: str
    account_id: str
    kind: str
    created: int
    body: dict[str, Any]


def undelivered(engine: Engine, key: bytes, *, account_id: str | None = None) -> list[Notice]:
    """For the delivery relay only (it runs on the server with the key file)."""
    query = select(user_notice).where(user_notice.c.delivered.is_(None))
    if account_id is not None:
        query = query.where(user_notice.c.account_id == account_id)
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(user_notice.c.created)).all()
    return [
        Notice(
            r.id,
            r.account_id,
            r.kind,
            r.created,
            orjson.loads(open_sealed(key, r.body_sealed, _aad(r.id, r.account_id))),
        )
        for r in rows
    ]


def mark_delivered(engine: Engine, notice_ids: list[str]) -> None:
    if not notice_ids:
        return
    with engine.begin() as conn:
        conn.execute(
            update(user_notice)
            .where(user_notice.c.id.in_(notice_ids))
            .values(delivered=now_micros())
        )
