"""Transaction and batch Bundles.

A transaction is one database transaction: every entry succeeds or nothing is stored. Entries are
processed as FHIR orders them (POST, then PUT, then GET); `urn:uuid:` fullUrls of created
entries get their ids before any entry is written, so entries may refer to each other in any
order. A batch runs each entry on its own and reports each outcome.
"""

from __future__ import annotations

import uuid
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError as DbIntegrityError

from rempart.access.decision import Decision
from rempart.access.pdp import Policy, Principal
from rempart.audit.durable import joined
from rempart.audit.events import Trail, bundle_records
from rempart.audit.records import AuditRecord, AuditSink
from rempart.clock import micros_to_iso
from rempart.context import RequestContext
from rempart.errors import (
    Conflict,
    Forbidden,
    InvalidResource,
    NotAuthenticated,
    RempartError,
    VersionConflict,
)
from rempart.fhir import SUPPORTED_TYPES, operation_outcome, parse_search, validate
from rempart.store.references import Resolver
from rempart.store.repository import ResourceStore, Stored
from rempart.store.search import search

MAX_ENTRIES = 1_000
_ORDER = {"POST": 0, "PUT": 1, "GET": 2}


class BundleService:
    def __init__(self, store: ResourceStore, policy: Policy, audit: AuditSink) -> None:
        self.store = store
        self.policy = policy
        self.audit = audit

    def process(self, who: Principal, ctx: RequestContext, body: object) -> dict[str, Any]:
        if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
            raise InvalidResource("POST /fhir takes a Bundle of type transaction or batch")
        kind = body.get("type")
        if kind not in ("transaction", "batch"):
            raise InvalidResource(
                "Bundle.type must be 'transaction' or 'batch'", expression="Bundle.type"
            )
        entries = body.get("entry") or []
        if not isinstance(entries, list):
            raise InvalidResource("Bundle.entry must be a list", expression="Bundle.entry")
        if len(entries) > MAX_ENTRIES:
            raise InvalidResource(f"a Bundle may hold at most {MAX_ENTRIES} entries")
        # A refusal anywhere in a transaction is recorded (with the entry it names) and re-raised.
        with Trail(self.audit, who, ctx, kind) as trail:
            decision = self.policy.decide(who)
            if kind == "transaction":
                plan = [_plan(i, e) for i, e in enumerate(entries)]
                return self._transaction(decision, plan, trail)
            return self._batch(decision, entries, trail)

    def _transaction(self, decision: Decision, plan: list[_Entry], trail: Trail) -> dict[str, Any]:
        urn_map = _assign_ids(plan)
        responses: dict[int, dict[str, Any]] = {}
        try:
            with self.store.engine.begin() as conn:
                resolver = Resolver(
                    self.store, decision, urn_map=urn_map, known=set(urn_map.values())
                )
                for entry in sorted(plan, key=_entry_order):
                    try:
                        responses[entry.index] = self._run(conn, decision, resolver, entry)
                    except RempartError as exc:
                        exc.message = f"entry {entry.index}: {exc.message}"
                        raise
                # Every entry's record joins the transaction: writes and trace commit together.
                done = [(e.method, e.res_type, e.res_id, responses[e.index]) for e in plan]
                with joined(conn):
                    self.audit.record(*bundle_records(trail, done, decision.reason))
        except DbIntegrityError:
            raise Conflict("the transaction raced with another write; nothing was stored") from None
        return {
            "resourceType": "Bundle",
            "type": "transaction-response",
            "entry": [responses[i] for i in range(len(plan))],
        }

    def _batch(self, decision: Decision, entries: list[object], trail: Trail) -> dict[str, Any]:
        out: list[dict[str, Any]] = []
        records: list[AuditRecord] = []
        for index, raw in enumerate(entries):
            try:
                # In a batch a bad entry is that entry's failure, not the whole request's.
                entry = _plan(index, raw)
                urn_map = _assign_ids([entry])
                with self.store.engine.begin() as conn:
                    resolver = Resolver(self.store, decision, urn_map=urn_map)
                    response = self._run(conn, decision, resolver, entry)
                    done = [(entry.method, entry.res_type, entry.res_id, response)]
                    # The entry's record commits with it (a failed append rolls it back).
                    with joined(conn):
                        self.audit.record(*bundle_records(trail, done, decision.reason))
                out.append(response)
            except RempartError as exc:
                out.append(_failure(exc.status, exc.code, exc.message))
                if isinstance(exc, Forbidden | NotAuthenticated):
                    records.append(trail.make("denied", detail=f"entry {index}: {exc.message}"))
            except DbIntegrityError:
                out.append(_failure(409, "conflict", "raced with another write; retry"))
        self.audit.record(*records)  # the refusals' traces are durable before the reply
        return {"resourceType": "Bundle", "type": "batch-response", "entry": out}

    def _run(
        self, conn: Connection, decision: Decision, resolver: Resolver, entry: _Entry
    ) -> dict[str, Any]:
        if entry.method == "GET":
            return self._get(conn, decision, entry)
        resource = entry.resource
        if resource is None:
            raise InvalidResource("a POST or PUT entry needs a resource")
        if entry.method == "POST" and entry.if_none_exist:
            query = parse_search(entry.res_type, parse_qsl(entry.if_none_exist))
            query.count, query.offset = 2, 0
            found, total = search(self.store, decision, query, conn=conn)
            if total > 1:
                raise VersionConflict(f"ifNoneExist matches {total} resources")
            if total == 1:
                if entry.full_url:
                    resolver.known.discard(f"{entry.res_type}/{entry.new_id}")
                    resolver.urn_map[entry.full_url] = f"{entry.res_type}/{found[0].res_id}"
                return _stored_response(found[0], "200 OK")
        if entry.method == "POST" or resource.get("id") == entry.res_id:
            # Before resolving: an unknown patient must look like someone else's (403).
            self.store.check_write(conn, decision, resource, client_id=entry.method == "PUT")
        resolver.resolve(conn, resource)
        if entry.method == "POST":
            stored = self.store.create_in(conn, decision, resource, res_id=entry.new_id)
            return _stored_response(stored, "201 Created")
        stored, created = self.store.update_in(
            conn, decision, entry.res_type, entry.res_id or "", resource, if_match=entry.if_match
        )
        return _stored_response(stored, "201 Created" if created else "200 OK")

    def _get(self, conn: Connection, decision: Decision, entry: _Entry) -> dict[str, Any]:
        if entry.res_id:
            stored = self.store.read(decision, entry.res_type, entry.res_id)
            return _stored_response(stored, "200 OK")
        query = parse_search(entry.res_type, entry.params)
        found, total = search(self.store, decision, query, conn=conn)
        bundle = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": total,
            "entry": [{"resource": s.json(), "search": {"mode": "match"}} for s in found],
        }
        return {"resource": bundle, "response": {"status": "200 OK"}}


class _Entry:
    def __init__(self, index: int, raw: object) -> None:
        if not isinstance(raw, dict):
            raise InvalidResource(f"entry {index} is not an object")
        request = raw.get("request")
        if not isinstance(request, dict):
            raise InvalidResource(
                f"entry {index} has no request", expression=f"Bundle.entry[{index}]"
            )
        self.index = index
        self.method = str(request.get("method", ""))
        if self.method not in _ORDER:
            raise InvalidResource(
                f"entry {index}: method {self.method!r} is not supported (POST, PUT, GET)"
            )
        url = str(request.get("url", ""))
        path, _, qs = url.partition("?")
        parts = [p for p in path.split("/") if p]
        if not parts or parts[0] not in SUPPORTED_TYPES or len(parts) > 2:
            raise InvalidResource(f"entry {index}: request.url {url!r} is not Type or Type/id")
        self.res_type = parts[0]
        self.res_id = parts[1] if len(parts) == 2 else None
        self.params = parse_qsl(qs, keep_blank_values=True)
        self.full_url = raw.get("fullUrl") if isinstance(raw.get("fullUrl"), str) else None
        self.if_none_exist = request.get("ifNoneExist")
        self.if_match = _if_match(request.get("ifMatch"), index)
        self.new_id = str(uuid.uuid4())
        self.resource: dict[str, Any] | None = None
        if self.method in ("POST", "PUT"):
            if "resource" not in raw:
                raise InvalidResource(f"entry {index}: a {self.method} needs a resource")
            try:
                self.resource = validate(raw["resource"], self.res_type)
            except RempartError as exc:
                exc.message = f"entry {index}: {exc.message}"
                raise
        if self.method == "PUT" and self.res_id is None:
            raise InvalidResource(f"entry {index}: PUT needs request.url Type/id")
        if self.method == "POST" and self.res_id is not None:
            raise InvalidResource(f"entry {index}: POST takes request.url Type, not Type/id")


def _entry_order(entry: _Entry) -> tuple[int, int, int]:
    # Conditional creates first: when one finds an existing resource, its urn must point there
    # before any other entry's references are resolved. New Patients next: a record created in
    # the same transaction is written into a compartment that must already be the caller's.
    patient_first = 0 if entry.res_type == "Patient" else 1
    return _ORDER[entry.method], 0 if entry.if_none_exist else 1, patient_first


def _plan(index: int, raw: object) -> _Entry:
    return _Entry(index, raw)


def _if_match(value: object, index: int) -> int | None:
    if value is None:
        return None
    text = str(value).removeprefix("W/").strip('"')
    if not text.isdigit():
        raise InvalidResource(f'entry {index}: ifMatch {value!r} is not W/"<version>"')
    return int(text)


def _assign_ids(plan: list[_Entry]) -> dict[str, str]:
    return {
        e.full_url: f"{e.res_type}/{e.new_id}"
        for e in plan
        if e.method == "POST" and e.full_url and e.full_url.startswith("urn:")
    }


def _stored_response(stored: Stored, status: str) -> dict[str, Any]:
    return {
        "fullUrl": f"{stored.res_type}/{stored.res_id}",
        "resource": stored.json(),
        "response": {
            "status": status,
            "location": f"{stored.res_type}/{stored.res_id}/_history/{stored.version}",
            "etag": f'W/"{stored.version}"',
            "lastModified": micros_to_iso(stored.last_updated),
        },
    }


def _failure(status: int, code: str, message: str) -> dict[str, Any]:
    return {
        "response": {
            "status": f"{status} {HTTPStatus(status).phrase}",
            "outcome": operation_outcome("error", code, message),
        }
    }
