"""The record interactions, each as authenticate -> decide -> fetch/decrypt -> respond.

Authentication happened in the API layer (it gives us a Principal); the decision is taken here,
from the principal alone, by the policy decision point, and handed to the store, which refuses to
decrypt anything the decision does not cover. Audit (issue #5) slots in before each return.
"""

from __future__ import annotations

import uuid
from typing import Any

from rempart.access.pdp import Policy, Principal
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
        self, store: ResourceStore, policy: Policy, *, default_count: int, max_count: int
    ) -> None:
        self.store = store
        self.policy = policy
        self.default_count = default_count
        self.max_count = max_count

    def read(self, who: Principal, ctx: RequestContext, res_type: str, res_id: str) -> Stored:
        check_type(res_type)
        return self.store.read(self.policy.decide(who), res_type, res_id)

    def vread(
        self, who: Principal, ctx: RequestContext, res_type: str, res_id: str, version: str
    ) -> Stored:
        check_type(res_type)
        if not version.isdigit():
            raise InvalidResource(f"version {version!r} is not a number")
        return self.store.vread(self.policy.decide(who), res_type, res_id, int(version))

    def history(
        self, who: Principal, ctx: RequestContext, res_type: str, res_id: str
    ) -> list[Stored]:
        check_type(res_type)
        return self.store.history(self.policy.decide(who), res_type, res_id)

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
        matches, total = search(self.store, self.policy.decide(who), query)
        return searchset_bundle(base_url, res_type, [m.json() for m in matches], total, query)

    def create(self, who: Principal, ctx: RequestContext, res_type: str, body: object) -> Stored:
        check_type(res_type)
        resource = validate(body, res_type)
        decision = self.policy.decide(who)
        with self.store.engine.begin() as conn:
            Resolver(self.store, decision).resolve(conn, resource)
            return self.store.create_in(conn, decision, resource, res_id=str(uuid.uuid4()))

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
        decision = self.policy.decide(who)
        with self.store.engine.begin() as conn:
            Resolver(self.store, decision).resolve(conn, resource)
            return self.store.update_in(
                conn, decision, res_type, res_id, resource, if_match=if_match
            )
