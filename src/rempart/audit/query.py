"""Questions asked of the audit log: AuditEvent search, the breach report, a patient's history.

Every query here is driven by an index: (account_id, at, outcome, patient, resource_type) for an
account's accesses (the breach report reads the index alone), (patient, at) for a patient's
history, (at) for a time window, the primary key for "newest first".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, Row, and_, func, or_, select

from rempart.audit.tables import audit_event
from rempart.clock import datetime_to_micros, micros_to_iso
from rempart.errors import InvalidSearch
from rempart.fhir.dates import parse_range
from rempart.identity.tables import account

ACCESS_OUTCOME = "success"


@dataclass
class EventQuery:
    account_ids: list[str] | None = None  # None: any account; []: matches nothing
    practitioner: str | None = None
    patient: str | None = None
    since: int | None = None  # inclusive, microseconds
    until: int | None = None  # exclusive
    actions: set[str] | None = None
    outcomes: set[str] | None = None
    before_seq: int | None = None
    count: int = 50
    extra: dict[str, Any] = field(default_factory=dict)


def instant(value: str | None, name: str) -> int | None:
    """An ISO date or dateTime as microseconds (its first instant); None passes through."""
    if value is None:
        return None
    span = parse_range(value) if len(value) <= 40 else None
    if span is None:
        raise InvalidSearch(f"{name} must be an ISO date or dateTime, not {value[:40]!r}")
    return datetime_to_micros(span[0])


def account_ids_for(engine: Engine, username: str) -> list[str]:
    with engine.connect() as conn:
        rows = conn.execute(select(account.c.id).where(account.c.username == username)).all()
    return [r.id for r in rows]


def usernames(engine: Engine, ids: set[str]) -> dict[str, str]:
    if not ids:
        return {}
    with engine.connect() as conn:
        rows = conn.execute(
            select(account.c.id, account.c.username).where(account.c.id.in_(sorted(ids)))
        ).all()
    return {r.id: r.username for r in rows}


def search_events(engine: Engine, q: EventQuery) -> tuple[list[Row[Any]], bool]:
    """Newest first, at most `q.count`; the flag says whether more remain (keyset paging)."""
    e = audit_event.c
    conds: list[Any] = []
    if q.account_ids is not None:
        if not q.account_ids:
            return [], False
        conds.append(e.account_id.in_(q.account_ids))
    if q.practitioner is not None:
        conds.append(e.practitioner == q.practitioner)
    if q.patient is not None:
        conds.append(e.patient == q.patient)
    if q.since is not None:
        conds.append(e.at >= q.since)
    if q.until is not None:
        conds.append(e.at < q.until)
    if q.actions is not None:
        conds.append(e.action.in_(sorted(q.actions)))
    if q.outcomes is not None:
        conds.append(e.outcome.in_(sorted(q.outcomes)))
    cols = [c for c in audit_event.c if c.name != "leaf_hash"]
    with engine.connect() as conn:
        if q.before_seq is not None:
            # Keyset paging on (at, seq): the order every index above already has, so a page
            # deep in a large window costs the same as the first.
            at = conn.execute(select(e.at).where(e.seq == q.before_seq)).scalar()
            if at is None:
                raise InvalidSearch(f"_before={q.before_seq} names no record")
            conds.append(or_(e.at < at, and_(e.at == at, e.seq < q.before_seq)))
        rows = conn.execute(
            select(*cols).where(*conds).order_by(e.at.desc(), e.seq.desc()).limit(q.count + 1)
        ).all()
    return list(rows[: q.count]), len(rows) > q.count


def event_by_seq(engine: Engine, seq: int) -> Row[Any] | None:
    cols = [c for c in audit_event.c if c.name != "leaf_hash"]
    with engine.connect() as conn:
        return conn.execute(select(*cols).where(audit_event.c.seq == seq)).first()


@dataclass(frozen=True)
class PatientAccess:
    patient: str
    first_access: int
    last_access: int
    accesses: int
    resource_types: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "patient": f"Patient/{self.patient}",
            "first_access": micros_to_iso(self.first_access),
            "last_access": micros_to_iso(self.last_access),
            "accesses": self.accesses,
            "resource_types": list(self.resource_types),
        }


def breach_report(
    engine: Engine, account_ids: Sequence[str], since: int | None, until: int | None
) -> list[PatientAccess]:
    """Every patient whose data the accounts reached (outcome success) in [since, until)."""
    if not account_ids:
        return []
    e = audit_event.c
    conds = [
        e.account_id.in_(list(account_ids)),
        e.outcome == ACCESS_OUTCOME,
        e.patient.is_not(None),
    ]
    if since is not None:
        conds.append(e.at >= since)
    if until is not None:
        conds.append(e.at < until)
    # One grouped pass over the covering index; types are merged per patient below.
    query = (
        select(e.patient, e.resource_type, func.min(e.at), func.max(e.at), func.count())
        .where(*conds)
        .group_by(e.patient, e.resource_type)
    )
    merged: dict[str, list[Any]] = {}
    with engine.connect() as conn:
        for patient, res_type, first, last, count in conn.execute(query):
            entry = merged.setdefault(patient, [first, last, 0, set()])
            entry[0] = min(entry[0], first)
            entry[1] = max(entry[1], last)
            entry[2] += count
            if res_type:
                entry[3].add(res_type)
    report = [PatientAccess(p, v[0], v[1], v[2], tuple(sorted(v[3]))) for p, v in merged.items()]
    report.sort(key=lambda a: (a.first_access, a.patient))
    return report
