"""The record interactions, each as authenticate -> decide -> fetch/decrypt -> respond.

Authentication happened in the API layer (it gives us a Principal); the decision is taken here,
from the principal alone, by the policy decision point, and handed to the store, which refuses to
decrypt anything the decision does not cover. Audit (issue #5) slots in before each return.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

from rempart.access.pdp import Policy, Principal
from rempart.audit.events import Trail, patient_of
from rempart.audit.records import AuditSink
from rempart.context import RequestContext
from rempart.errors import InvalidResource, UnsupportedResourceType
from rempart.fhir import SUPPORTED_TYPES, parse_search, searchset_bundle, validate
from rempart.store.references import Resolver
from rempart.store.repository import ResourceStore, Stored
from rempart.store.search import search


def check_type(res_type: str) -> None:
    if res_type not in SUPPORTED_TYPES:
        raise UnsupportedResourceType(f"resource type {res_type!r} is not supported here")


class RecordService:
    def __init__(
        self,
        store: ResourceStore,
        policy: Policy,
        audit: AuditSink,
        *,
        default_count: int,
        max_count: int,
    ) -> None:
        self.store = store
        self.policy = policy
        self.audit = audit
        self.default_count = default_count
        self.max_count = max_count

    def read(self, who: Principal, ctx: RequestContext, res_type: str, res_id: str) -> Stored:
        check_type(res_type)
        with Trail(self.audit, who, ctx, "read", res_type, res_id) as trail:
            decision = self.policy.decide(who)
            stored = self.store.read(decision, res_type, res_id)
            trail.success(stored, reason=decision.explain())  # durable before the data leaves
        return stored

    def vread(
        self, who: Principal, ctx: RequestContext, res_type: str, res_id: str, version: str
    ) -> Stored:
        check_type(res_type)
        if not version.isdigit():
            raise InvalidResource(f"version {version!r} is not a number")
        with Trail(self.audit, who, ctx, "vread", res_type, res_id) as trail:
            decision = self.policy.decide(who)
            stored = self.store.vread(decision, res_type, res_id, int(version))
            trail.success(stored, reason=decision.explain())
        return stored

    def history(
        self, who: Principal, ctx: RequestContext, res_type: str, res_id: str
    ) -> list[Stored]:
        check_type(res_type)
        with Trail(self.audit, who, ctx, "history", res_type, res_id) as trail:
            decision = self.policy.decide(who)
            versions = self.store.history(decision, res_type, res_id)
            trail.success(*versions, reason=decision.explain())
        return versions

    def search(
        self,
        who: Principal,
        ctx: RequestContext,
        res_type: str,
        params: list[tuple[str, str]],
        base_url: str,
    ) -> dict[str, Any]:
        check_type(res_type)
        query = parse_search(
            res_type, params, default_count=self.default_count, max_count=self.max_count
        )
        with Trail(self.audit, who, ctx, "search", res_type, detail=urlencode(params)) as trail:
            decision = self.policy.decide(who)
            matches, total = search(self.store, decision, query)
            docs = [m.json() for m in matches]
            # One record per patient in the page, durable before the Bundle is built.
            found = [(m.res_id, patient_of(m, d)) for m, d in zip(matches, docs, strict=True)]
            # Each patient's record names the relationship that let that patient through.
            trail.query(res_type, found, reason=decision.reason, explain=decision.explain)
        return searchset_bundle(base_url, res_type, docs, total, query)

    def create(self, who: Principal, ctx: RequestContext, res_type: str, body: object) -> Stored:
        check_type(res_type)
        resource = validate(body, res_type)
        with Trail(self.audit, who, ctx, "create", res_type) as trail:
            decision = self.policy.decide(who)
            with self.store.engine.begin() as conn:
                self.store.check_write(conn, decision, resource, client_id=False)
                Resolver(self.store, decision).resolve(conn, resource)
                stored = self.store.create_in(conn, decision, resource, res_id=str(uuid.uuid4()))
                trail.written(conn, stored, reason=decision.explain())  # commits with the write
        return stored

    def update(
        self,
        who: Principal,
        ctx: RequestContext,
        res_type: str,
        res_id: str,
        body: object,
        if_match: int | None,
    ) -> tuple[Stored, bool]:
        check_type(res_type)
        resource = validate(body, res_type)
        with Trail(self.audit, who, ctx, "update", res_type, res_id) as trail:
            decision = self.policy.decide(who)
            with self.store.engine.begin() as conn:
                if resource.get("id") == res_id:  # else update_in answers 400 for the mismatch
                    self.store.check_write(conn, decision, resource, client_id=True)
                Resolver(self.store, decision).resolve(conn, resource)
                stored, created = self.store.update_in(
                    conn, decision, res_type, res_id, resource, if_match=if_match
                )
                trail.written(conn, stored, reason=decision.explain(), created=created)
        return stored, created
