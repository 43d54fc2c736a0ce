"""Audit records for the record services: one helper per shape of event, so the services stay
`decide -> fetch -> record -> respond` and every record carries the same who/where/why.

`Trail` wraps one interaction: a refusal raised inside it (Forbidden, NotAuthenticated from a
step-up, whatever the policy or the guard raise) is recorded as "denied" and re-raised; a miss
(404, 410) as "failed". Success is recorded explicitly by the service, with the patients the
response carries, before the service returns the data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import orjson
from sqlalchemy import Connection

from rempart.access.pdp import Principal
from rempart.audit.durable import joined
from rempart.audit.records import AuditRecord, AuditSink
from rempart.context import RequestContext
from rempart.errors import Forbidden, NotAuthenticated, ResourceGone, ResourceNotFound
from rempart.fhir.compartment import OWNER_ELEMENT, patient_compartment
from rempart.store.repository import Stored

_DENIED = (Forbidden, NotAuthenticated)
_MISSED = (ResourceNotFound, ResourceGone)


def record_for(
    who: Principal,
    ctx: RequestContext,
    action: str,
    outcome: str,
    *,
    resource_type: str | None = None,
    resource_id: str | None = None,
    patient: str | None = None,
    reason: str | None = None,
    detail: str | None = None,
) -> AuditRecord:
    return AuditRecord(
        action=action,
        outcome=outcome,
        ip=ctx.ip,
        user_agent=ctx.user_agent,
        account_id=who.account_id,
        username=who.username,
        role=who.role.value,
        practitioner=who.practitioner,
        session_id=who.session_id,
        resource_type=resource_type,
        resource_id=resource_id,
        patient=patient,
        reason=reason,
        detail=detail,
        request_id=ctx.request_id,
    )


def patient_of(stored: Stored, parsed: dict[str, Any] | None = None) -> str | None:
    """The patient a served resource belongs to (parses the JSON only for types that can)."""
    if stored.res_type == "Patient":
        return stored.res_id
    if stored.res_type not in OWNER_ELEMENT:
        return None
    return patient_compartment(parsed if parsed is not None else orjson.loads(stored.body))


@dataclass
class Trail:
    audit: AuditSink
    who: Principal
    ctx: RequestContext
    action: str
    resource_type: str | None = None
    resource_id: str | None = None
    reason: str | None = None
    detail: str | None = None

    def __enter__(self) -> Trail:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        if exc is None:
            return
        if isinstance(exc, _DENIED):
            outcome = "denied"
        elif isinstance(exc, _MISSED):
            outcome = "failed"
        else:
            return
        # Recorded before the refusal leaves; if this write fails, the 503 replaces the 403.
        self.audit.record(self.make(outcome, detail=_first_line(exc)))

    def make(self, outcome: str, *, action: str | None = None, **fields: Any) -> AuditRecord:
        values: dict[str, Any] = {
            "resource_type": self.resource_type,
            "resource_id": self.resource_id,
            "reason": self.reason,
            "detail": self.detail,
        }
        values.update(fields)
        return record_for(self.who, self.ctx, action or self.action, outcome, **values)

    def written(
        self, conn: Connection, stored: Stored, *, reason: str | None, created: bool = True
    ) -> None:
        """Inside the write's transaction, before it commits: the write and its record are
        committed together or not at all (if the audit append fails, the write rolls back)."""
        with joined(conn):
            self.audit.record(
                self.make(
                    "success",
                    action="create" if created else "update",
                    resource_type=stored.res_type,
                    resource_id=stored.res_id,
                    patient=patient_of(stored),
                    reason=reason,
                    detail=f"version {stored.version}",
                )
            )

    def success(self, *stored: Stored, reason: str | None) -> None:
        """One record per resource served (reads, history, writes), durable on return."""
        self.audit.record(
            *(
                self.make(
                    "success",
                    resource_type=s.res_type,
                    resource_id=s.res_id,
                    patient=patient_of(s),
                    reason=reason,
                )
                for s in _one_per_resource(stored)
            )
        )

    def query(
        self,
        res_type: str,
        found: Iterable[tuple[str, str | None]],
        *,
        reason: str | None,
        explain: Callable[[str], str] | None = None,
    ) -> None:
        """A search: one record per patient in the page (IHE BALP patient-specific query), each
        naming the ids it returned for that patient and, with `explain`, why that patient was
        let through; one record for the query itself when the page holds no patient's data."""
        per_patient: dict[str | None, list[str]] = {}
        for res_id, patient in found:
            per_patient.setdefault(patient, []).append(res_id)
        records = [
            self.make(
                "success",
                resource_type=res_type,
                resource_id=ids[0] if len(ids) == 1 else None,
                patient=patient,
                reason=reason if explain is None else explain(patient),
                detail=_join(self.detail, ids),
            )
            for patient, ids in per_patient.items()
            if patient is not None
        ]
        if not records or None in per_patient:
            ids = per_patient.get(None, [])
            records.append(
                self.make(
                    "success", resource_type=res_type, reason=reason, detail=_join(self.detail, ids)
                )
            )
        self.audit.record(*records)


def _one_per_resource(stored: Iterable[Stored]) -> Iterator[Stored]:
    seen: set[tuple[str, str]] = set()
    for s in stored:
        if (s.res_type, s.res_id) not in seen:
            seen.add((s.res_type, s.res_id))
            yield s


def _join(query: str | None, ids: list[str]) -> str | None:
    parts = [p for p in (query, f"ids={','.join(ids)}" if ids else None) if p]
    return " ".join(parts) if parts else None


def _first_line(exc: BaseException) -> str:
    return (
        str(getattr(exc, "message", exc)).splitlines()[0][:300] if str(exc) else type(exc).__name__
    )


def bundle_records(
    trail: Trail, done: Iterable[tuple[str, str, str | None, dict[str, Any]]], reason: str | None
) -> list[AuditRecord]:
    """Records for the entries of a transaction or batch, from their responses: (method, type,
    id, response entry). GET by id is a read, GET by query a search (one record per patient)."""
    out: list[AuditRecord] = []
    for method, res_type, res_id, response in done:
        resource = response.get("resource")
        if not isinstance(resource, dict):
            continue
        if method == "GET" and res_id is None:
            per_patient: dict[str | None, list[str]] = {}
            for item in resource.get("entry", []):
                found = item.get("resource", {})
                per_patient.setdefault(patient_compartment(found), []).append(str(found.get("id")))
            for patient, ids in per_patient.items() or [(None, [])]:
                out.append(
                    trail.make(
                        "success",
                        action="search",
                        resource_type=res_type,
                        resource_id=ids[0] if len(ids) == 1 else None,
                        patient=patient,
                        reason=reason,
                        detail=_join(None, ids),
                    )
                )
            continue
        action = {"POST": "create", "PUT": "update"}.get(method, "read")
        out.append(
            trail.make(
                "success",
                action=action,
                resource_type=str(resource.get("resourceType", res_type)),
                resource_id=str(resource.get("id", res_id)),
                patient=patient_compartment(resource),
                reason=reason,
            )
        )
    return out
