"""Reading the audit log, with its own access rules, each reading itself recorded.

- The security officer searches every record (AuditEvent), runs breach reports and asks for
  proofs. Administrators and clinical staff cannot: the log of who read what is not theirs.
- A patient sees the accesses to their own record (access history, and AuditEvent restricted to
  their own patient id), without the network and session details of the staff involved.
- The local operator (CLI, holding the key file) runs breach reports.
Each of these reads is itself an audit record ("audit-search", "breach-report",
"access-history"): who watched the watchers is answerable too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rempart.access.pdp import Principal
from rempart.access.roles import Role
from rempart.audit.events import Trail, record_for
from rempart.audit.fhir_view import audit_event, parse_event_query, with_private
from rempart.audit.log import AuditLog
from rempart.audit.query import (
    EventQuery,
    account_ids_for,
    breach_report,
    event_by_seq,
    search_events,
    usernames,
)
from rempart.audit.records import AuditRecord
from rempart.audit.who import Directory
from rempart.clock import micros_to_iso
from rempart.context import RequestContext
from rempart.crypto import IntegrityError
from rempart.errors import Forbidden, InvalidSearch, ResourceNotFound

NameOf = Callable[[str], str | None]


def _own_patient(who: Principal) -> str:
    if who.patient is None or not who.patient.startswith("Patient/"):
        raise Forbidden("this patient account is not linked to a record")
    return who.patient.removeprefix("Patient/")


class AuditService:
    def __init__(self, log: AuditLog, directory: Directory) -> None:
        self.log = log
        self.engine = log.engine
        self.directory = directory

    # ---- AuditEvent --------------------------------------------------------------------------

    def search(
        self, who: Principal, ctx: RequestContext, params: list[tuple[str, str]], base: str
    ) -> dict[str, Any]:
        with Trail(self.log, who, ctx, "audit-search", "AuditEvent") as trail:
            query, agent_name = parse_event_query(params)
            patient_view = self._scope(who, query)
            if agent_name is not None:
                named = account_ids_for(self.engine, agent_name)
                query.account_ids = (
                    named
                    if query.account_ids is None
                    else [i for i in query.account_ids if i in named]
                )
            rows, more = search_events(self.engine, query)
            self.log.record(
                trail.make("success", patient=query.patient, detail=_query_text(params))
            )
        names = usernames(self.engine, {r.account_id for r in rows if r.account_id})
        entries = [
            {
                "fullUrl": f"{base}/AuditEvent/{r.seq}",
                "resource": self._event(r, names, patient_view),
                "search": {"mode": "match"},
            }
            for r in rows
        ]
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "link": [{"relation": "self", "url": f"{base}/AuditEvent?{_query_text(params)}"}],
            "entry": entries,
        }
        if more:
            kept = [(k, v) for k, v in params if k != "_before"]
            kept.append(("_before", str(rows[-1].seq)))
            bundle["link"].append(
                {"relation": "next", "url": f"{base}/AuditEvent?{_query_text(kept)}"}
            )
        return bundle

    def read(self, who: Principal, ctx: RequestContext, event_id: str) -> dict[str, Any]:
        with Trail(self.log, who, ctx, "audit-read", "AuditEvent", event_id) as trail:
            if not event_id.isdigit() or len(event_id) > 18:
                raise ResourceNotFound(f"AuditEvent/{event_id} is not known")
            query = EventQuery()
            patient_view = self._scope(who, query)
            row = event_by_seq(self.engine, int(event_id))
            if row is None or (patient_view and row.patient != query.patient):
                if patient_view:  # absent and not yours look the same
                    raise Forbidden(f"access to AuditEvent/{event_id} is not permitted")
                raise ResourceNotFound(f"AuditEvent/{event_id} is not known")
            self.log.record(trail.make("success", patient=row.patient))
        names = usernames(self.engine, {row.account_id} if row.account_id else set())
        return self._event(row, names, patient_view)

    def _scope(self, who: Principal, query: EventQuery) -> bool:
        """Narrow the query to what `who` may see; True for a patient's restricted view."""
        if who.role is Role.SECURITY_OFFICER:
            return False
        if who.role is Role.PATIENT:
            own = _own_patient(who)
            if query.patient is not None and query.patient != own:
                raise Forbidden("a patient sees the accesses to their own record only")
            query.patient = own
            return True
        raise Forbidden("the audit log is read by the security officer (and patients, their own)")

    def _event(self, row: Any, names: dict[str, str], patient_view: bool) -> dict[str, Any]:
        event = audit_event(
            row, username=names.get(row.account_id or ""), patient_view=patient_view
        )
        return with_private(event, self._private(row), row.outcome)

    def _private(self, row: Any) -> dict[str, str]:
        try:
            return self.log.sealer.open(row.seq, row.sealed)
        except IntegrityError:
            return {"reason": "(sealed text does not open: run `rempart audit verify`)"}

    # ---- breach report -----------------------------------------------------------------------

    def breach_report(
        self,
        who: Principal | None,
        ctx: RequestContext,
        user: str,
        since: int | None,
        until: int | None,
    ) -> dict[str, Any]:
        """`who` None is the local operator (CLI); over HTTP, the security officer only."""
        if since is not None and until is not None and since >= until:
            raise InvalidSearch("since must be before until")
        if not user or len(user) > 150:
            raise InvalidSearch("user must be a username (1 to 150 characters)")
        detail = f"user={user} since={since} until={until}"
        if who is None:
            self.log.record(
                AuditRecord(
                    action="breach-report",
                    outcome="success",
                    ip=ctx.ip,
                    user_agent=ctx.user_agent,
                    detail=detail,
                    request_id=ctx.request_id,
                )
            )
        else:
            with Trail(self.log, who, ctx, "breach-report", detail=detail) as trail:
                if who.role is not Role.SECURITY_OFFICER:
                    raise Forbidden("breach reports are for the security officer")
                self.log.record(trail.make("success"))
        patients = breach_report(self.engine, account_ids_for(self.engine, user), since, until)
        return {
            "user": user,
            "since": micros_to_iso(since) if since is not None else None,
            "until": micros_to_iso(until) if until is not None else None,
            "patients": [p.to_json() for p in patients],
        }

    # ---- a patient's own access history ------------------------------------------------------

    def access_history(
        self, who: Principal, ctx: RequestContext, count: int, before: int | None
    ) -> dict[str, Any]:
        with Trail(self.log, who, ctx, "access-history") as trail:
            if who.role is not Role.PATIENT:
                raise Forbidden("the access history is a patient's view of their own record")
            own = _own_patient(who)
            query = EventQuery(patient=own, outcomes={"success"}, before_seq=before, count=count)
            rows, more = search_events(self.engine, query)
            self.log.record(trail.make("success", patient=own))
        accesses = []
        for row in rows:
            if row.account_id == who.account_id:
                continue  # the patient's own visits to their record are not news to them
            person = self.directory.person(who, row.account_id, row.practitioner)
            accesses.append(
                {
                    "when": micros_to_iso(row.at),
                    "who": {"name": person.name, "role": row.role},
                    "unit": person.unit,
                    "data": self.directory.kind_of_data(row.resource_type),
                    "resource_type": row.resource_type,
                    "action": row.action,
                    "why": self._private(row).get("reason"),
                }
            )
        out: dict[str, Any] = {"patient": f"Patient/{own}", "accesses": accesses}
        if more:
            out["next_before"] = rows[-1].seq
        return out


def _query_text(params: list[tuple[str, str]]) -> str:
    from urllib.parse import urlencode

    return urlencode(params)


__all__ = ["AuditService", "record_for"]
