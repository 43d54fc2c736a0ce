"""Bulk export: the only way many patients' records leave rempart at once.

An export is a four-eyes request (kind "export") made by the clinician who will receive it,
naming a cohort (a search, or a list of patients) and a purpose. An administrator *and* a
security officer, neither of them the requester, approve it with a fresh second factor; only
then is the cohort selected (blind-index digests, nothing decrypted), frozen in
`export_member`, and the recipient may download it once, within 24 hours, after a fresh second
factor, as FHIR NDJSON, pseudonymised unless the approved request said `identified: true`.
Every patient in it gets an audit record before the first byte leaves.

Administrators and security officers can never download: they are not recipients, and their
roles do not hold `access:export:download`. There is no `$export`, no CSV dump, nothing else.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson
from sqlalchemy import Engine, insert, select, update

from rempart.access.common import (
    RequestConflict,
    RequestNotFound,
    audit,
    require,
    require_fresh_factor,
)
from rempart.access.pdp import Principal, cohort_selection_decision, export_decision
from rempart.access.permissions import Permission
from rempart.access.pseudonym import Pseudonymiser
from rempart.access.tables import cohort_export, export_member
from rempart.audit.records import AuditRecord, AuditSink
from rempart.clock import micros_to_iso, now_micros
from rempart.context import RequestContext
from rempart.errors import Forbidden, InvalidResource
from rempart.fhir import SUPPORTED_TYPES, SearchQuery, parse_search
from rempart.store.repository import ResourceStore
from rempart.store.search import matching_compartments, search
from rempart.store.tables import resource

HOUR = 3_600_000_000
EXPORT_HOURS = 24
PAGE = 500


@dataclass(frozen=True)
class ExportView:
    id: str
    status: str
    patients: int
    types: list[str]
    identified: bool
    expires: str
    downloaded: str | None


# A cohort is defined by clinical criteria, never by who the patients are: the definition is
# shown to the approvers (administrators, security officers), who must not read identities.
IDENTITY_PARAMS = frozenset(
    {
        "_id",
        "address",
        "address-city",
        "address-postalcode",
        "beneficiary",
        "birthdate",
        "death-date",
        "email",
        "family",
        "given",
        "identifier",
        "name",
        "patient",
        "phone",
        "policy-holder",
        "subject",
        "subscriber",
    }
)


def parse_cohort_query(text: str) -> SearchQuery:
    """A cohort definition, e.g. `Condition?code=http://hl7.org/fhir/sid/icd-10|E11`."""
    res_type, _, qs = text.strip().partition("?")
    if res_type not in SUPPORTED_TYPES or not qs:
        raise InvalidResource("a cohort query is Type?parameters, e.g. Condition?code=...")
    pairs = parse_qsl(qs, keep_blank_values=True)
    named = sorted({name.partition(":")[0] for name, _ in pairs} & IDENTITY_PARAMS)
    if named:
        raise InvalidResource(
            f"a cohort is defined by clinical criteria, not by identity ({', '.join(named)}); "
            "list the patients instead"
        )
    query = parse_search(res_type, pairs)
    if query.post_filters:
        raise InvalidResource("a cohort cannot be selected by date ranges or long names yet")
    return query


def select_cohort(
    store: ResourceStore,
    request_id: str,
    *,
    query_text: str | None,
    patients: list[str],
    limit: int,
) -> list[str]:
    """The patient ids of an approved cohort (explicit ids that name no patient are dropped)."""
    chosen: set[str] = set()
    if query_text:
        query = parse_cohort_query(query_text)
        decision = cohort_selection_decision(request_id, query.resource_type)
        chosen.update(matching_compartments(store, decision, query, limit=limit))
    if patients:
        ids = sorted({p.removeprefix("Patient/") for p in patients})
        with store.engine.connect() as conn:
            for start in range(0, len(ids), 500):
                rows = conn.execute(
                    select(resource.c.res_id).where(
                        resource.c.res_type == "Patient",
                        resource.c.res_id.in_(ids[start : start + 500]),
                    )
                ).scalars()
                chosen.update(rows)
    if len(chosen) > limit:
        raise InvalidResource(f"the cohort holds more than {limit} patients; narrow it")
    return sorted(chosen)


def freeze(
    engine: Engine,
    request_id: str,
    recipient: str,
    types: list[str],
    identified: bool,
    patients: list[str],
) -> None:
    now = now_micros()
    with engine.begin() as conn:
        conn.execute(
            insert(cohort_export).values(
                id=request_id,
                recipient=recipient,
                types=",".join(sorted(types)),
                identified=identified,
                patients=len(patients),
                created=now,
                expires=now + EXPORT_HOURS * HOUR,
                downloaded=None,
            )
        )
        if patients:
            conn.execute(
                insert(export_member), [{"export_id": request_id, "patient": p} for p in patients]
            )


class Exports:
    def __init__(self, store: ResourceStore, audit_sink: AuditSink) -> None:
        self._store = store
        self._engine = store.engine
        self._audit = audit_sink

    def view(self, who: Principal, export_id: str) -> ExportView:
        row = self._mine(who, export_id)
        now = now_micros()
        status = "downloaded" if row.downloaded else ("expired" if row.expires < now else "ready")
        return ExportView(
            id=row.id,
            status=status,
            patients=row.patients,
            types=row.types.split(","),
            identified=row.identified,
            expires=micros_to_iso(row.expires),
            downloaded=micros_to_iso(row.downloaded) if row.downloaded else None,
        )

    def _mine(self, who: Principal, export_id: str) -> Any:
        require(who, Permission.ACCESS_EXPORT_DOWNLOAD)
        with self._engine.connect() as conn:
            row = conn.execute(select(cohort_export).where(cohort_export.c.id == export_id)).first()
        if row is None or row.recipient != who.account_id:
            # Someone else's export looks like none at all.
            raise RequestNotFound(f"no approved export {export_id} for this account")
        return row

    def download(self, who: Principal, ctx: RequestContext, export_id: str) -> Iterator[bytes]:
        """Claims the single download and returns the NDJSON lines (generated lazily)."""
        row = self._mine(who, export_id)
        require_fresh_factor(who)
        now = now_micros()
        with self._engine.begin() as conn:
            claimed = conn.execute(
                update(cohort_export)
                .where(
                    cohort_export.c.id == export_id,
                    cohort_export.c.recipient == who.account_id,
                    cohort_export.c.downloaded.is_(None),
                    cohort_export.c.expires > now,
                )
                .values(downloaded=now)
            ).rowcount
            members = list(
                conn.execute(
                    select(export_member.c.patient).where(export_member.c.export_id == export_id)
                ).scalars()
            )
        if claimed != 1:
            raise RequestConflict(f"export {export_id} was already downloaded or has expired")
        types = sorted(str(row.types).split(","))
        identified = bool(row.identified)
        # Durable before any byte leaves: one record per patient in the file.
        self._audit.record(
            *(
                AuditRecord(
                    action="export",
                    outcome="success",
                    ip=ctx.ip,
                    user_agent=ctx.user_agent,
                    account_id=who.account_id,
                    username=who.username,
                    role=who.role.value,
                    session_id=who.session_id,
                    patient=p,
                    reason=f"approved cohort export {export_id}",
                    detail="identified" if identified else "pseudonymised",
                    request_id=ctx.request_id,
                )
                for p in members
            )
        )
        audit(self._audit, who, ctx, "export-download", "success", detail=export_id)
        return self._lines(export_id, who.account_id, types, identified)

    def _lines(
        self, export_id: str, recipient: str, types: list[str], identified: bool
    ) -> Iterator[bytes]:
        decision = export_decision(export_id, recipient, frozenset(types))
        pseudo = None if identified else Pseudonymiser(secrets.token_bytes(32))
        for res_type in types:
            offset = 0
            while True:
                query = SearchQuery(res_type, count=PAGE, offset=offset)
                page, _total = search(self._store, decision, query)
                for stored in page:
                    body = stored.json()
                    if pseudo is not None:
                        body = pseudo.resource(body)
                    yield orjson.dumps(body) + b"\n"
                if len(page) < PAGE:
                    break
                offset += PAGE


def check_recipient(who: Principal) -> None:
    """Only a role that may download (clinicians) may ask for an export for itself."""
    if not who.may(Permission.ACCESS_EXPORT_DOWNLOAD):
        raise Forbidden(f"the {who.role.value} role cannot receive an export")
