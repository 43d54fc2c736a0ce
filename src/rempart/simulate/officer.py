"""The security officer's view: the alert queue, read over HTTP like any officer would.

`GET /security/alerts` (the guard's queue, every page) first; where it is not served, the
access package's `GET /access/alerts`, and if that one is truncated at its page limit, the
`security_alert` table in-process, so no alert goes uncounted. An alert is *about* an account
when one of its details is that account's id or username, or its message names the username.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from rempart import alerts as alert_queue
from rempart.simulate.actor import Actor

PAGE = 1000
SECURITY_PAGE = 500
_TOKEN = re.compile(r"[A-Za-z0-9._@\-]+")


@dataclass(frozen=True)
class SeenAlert:
    kind: str
    created: int
    values: frozenset[str]


def _items(doc: Any) -> list[dict[str, Any]] | None:
    if isinstance(doc, list):
        return [d for d in doc if isinstance(d, dict)]
    if isinstance(doc, dict):
        for key in ("alerts", "items", "results"):
            if isinstance(doc.get(key), list):
                return [d for d in doc[key] if isinstance(d, dict)]
        if isinstance(doc.get("entry"), list):
            return [e.get("resource", e) for e in doc["entry"] if isinstance(e, dict)]
    return None


def _seen(item: dict[str, Any]) -> SeenAlert:
    values: set[str] = set()
    details = item.get("details")
    if isinstance(details, dict):
        values |= {str(v) for v in details.values() if v is not None}
    message = item.get("message")
    if isinstance(message, str):
        values |= set(_TOKEN.findall(message))
    for key in ("account_id", "username", "account"):
        if isinstance(item.get(key), str):
            values.add(item[key])
    created = item.get("created")
    return SeenAlert(
        str(item.get("kind", "")),
        int(created) if isinstance(created, int) else 0,
        frozenset(values),
    )


def read_alerts(officer: Actor, engine: Engine) -> tuple[list[SeenAlert], str]:
    """Every alert raised, and where they were read from."""
    if officer.token is None:
        officer.login()
    paged = _security_queue(officer)
    if paged is not None:
        return paged, "GET /security/alerts"
    reply = officer.call("GET", "/access/alerts", params={"pending": "false", "limit": str(PAGE)})
    items = _items(reply.doc) if reply.ok else None
    if items is not None and len(items) < PAGE:
        return [_seen(i) for i in items], "GET /access/alerts"
    found: list[SeenAlert] = []
    before: int | None = None
    while True:  # the whole table, newest first, a page at a time
        page = alert_queue.list_alerts(engine, limit=PAGE, before=before)
        found += [
            SeenAlert(
                a.kind,
                a.created,
                frozenset({*map(str, a.details.values()), *_TOKEN.findall(a.message)}),
            )
            for a in page
        ]
        if len(page) < PAGE:
            return found, "security_alert table (in-process)"
        before = page[-1].created


def _security_queue(officer: Actor) -> list[SeenAlert] | None:
    """The guard's queue, every page (`next_before`); None if it is not served."""
    found: list[SeenAlert] = []
    params = {"limit": str(SECURITY_PAGE)}
    for _ in range(10_000):
        reply = officer.call("GET", "/security/alerts", params=params)
        items = _items(reply.doc) if reply.ok else None
        if items is None:
            return None
        found += [_seen(i) for i in items]
        after = reply.doc.get("next_before") if isinstance(reply.doc, dict) else None
        if not after or not items:
            break
        params = {"limit": str(SECURITY_PAGE), "before": str(after)}
    return found


def about(alert: SeenAlert, account_id: str, username: str) -> bool:
    return account_id in alert.values or username in alert.values
