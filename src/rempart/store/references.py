"""Reference checking and resolution: every stored reference points at something that exists.

`urn:uuid:` references (transaction Bundles) map to the ids assigned in the same Bundle;
conditional references (`Practitioner?identifier=sys|val`, as bulk exports write them) are
resolved by a search that must match exactly one resource, under the caller's decision.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from sqlalchemy import Connection

from rempart.access.decision import Decision
from rempart.errors import RempartError, UnprocessableResource
from rempart.fhir import SUPPORTED_TYPES, parse_search, references
from rempart.store.repository import ResourceStore
from rempart.store.search import search


class Resolver:
    """Resolves references for one request or one import; remembers conditional answers."""

    def __init__(
        self,
        store: ResourceStore,
        decision: Decision,
        *,
        urn_map: dict[str, str] | None = None,
        known: set[str] | None = None,
    ) -> None:
        self.store = store
        self.decision = decision
        self.urn_map = urn_map or {}
        # "Type/id" already checked or about to be written in the same unit of work.
        self.known: set[str] = known if known is not None else set()
        self._conditional: dict[str, str] = {}

    def resolve(self, conn: Connection, body: dict[str, Any]) -> None:
        for path, ref in references(body):
            value = ref.get("reference")
            if not isinstance(value, str) or value.startswith("#"):
                continue
            ref["reference"] = self._target(conn, path, value)

    def _target(self, conn: Connection, path: str, value: str) -> str:
        if value.startswith(("urn:uuid:", "urn:oid:")):
            target = self.urn_map.get(value)
            if target is None:
                raise UnprocessableResource(
                    f"{path}: {value} is not the fullUrl of an entry of this Bundle",
                    expression=path,
                )
            return target
        if value.startswith(("http://", "https://")):
            return value  # an external resource: not ours to check
        if "?" in value:
            return self._conditional_target(conn, path, value)
        parts = value.split("/")
        if len(parts) != 2 or parts[0] not in SUPPORTED_TYPES or not parts[1]:
            raise UnprocessableResource(
                f"{path}: {value!r} is not a reference of the form Type/id", expression=path
            )
        if value not in self.known:
            if not self.store.exists(conn, parts[0], parts[1]):
                raise UnprocessableResource(f"{path}: {value} does not exist", expression=path)
            self.known.add(value)
        return value

    def _conditional_target(self, conn: Connection, path: str, value: str) -> str:
        cached = self._conditional.get(value)
        if cached is not None:
            return cached
        res_type, _, qs = value.partition("?")
        if res_type not in SUPPORTED_TYPES:
            raise UnprocessableResource(f"{path}: unknown type in {value!r}", expression=path)
        try:
            query = parse_search(res_type, parse_qsl(qs, keep_blank_values=True))
            query.count, query.offset = 2, 0
            matches, total = search(self.store, self.decision, query, conn=conn)
        except RempartError as exc:
            raise UnprocessableResource(
                f"{path}: {value}: {exc.message}", expression=path
            ) from None
        if total != 1:
            raise UnprocessableResource(
                f"{path}: {value} matches {total} resources; it must match exactly one",
                expression=path,
            )
        target = f"{res_type}/{matches[0].res_id}"
        self._conditional[value] = target
        return target
