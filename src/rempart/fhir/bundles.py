"""Bundles the server answers with: searchset, history, transaction-/batch-response.

Each follows the R4 Bundle invariants: `total` only on searchset and history, `entry.search`
only on searchset, `entry.request` on history, `entry.response` on history and *-response.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, Literal
from urllib.parse import quote

from rempart.fhir.query import SearchQuery

Resource = dict[str, Any]


def searchset_bundle(
    base_url: str,
    resource_type: str,
    resources: list[Resource],
    total: int,
    query: SearchQuery,
) -> Resource:
    """One page of search results. Links repeat the query (`query.echo`) with `_count` and
    `_offset`: self, first, previous (when offset > 0), next (when offset + count < total), last."""
    base = base_url.rstrip("/")
    count, offset = query.count, query.offset

    def page(at: int) -> str:
        pairs = [*query.echo, ("_count", str(count)), ("_offset", str(at))]
        qs = "&".join(f"{quote(k, safe=':')}={quote(v, safe=':,/')}" for k, v in pairs)
        return f"{base}/{resource_type}?{qs}"

    links = [("self", page(offset)), ("first", page(0))]
    if offset > 0:
        links.append(("previous", page(max(0, offset - count))))
    if count and offset + count < total:
        links.append(("next", page(offset + count)))
    if count:
        links.append(("last", page(max(0, (total - 1) // count * count))))
    entries = [
        {**_full_url(base, r), "resource": r, "search": {"mode": "match"}} for r in resources
    ]
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": [{"relation": rel, "url": url} for rel, url in links],
        "entry": entries,
    }


@dataclass(frozen=True)
class HistoryEntry:
    """One stored version. `method` is how it was made; `resource` is None for a deletion."""

    resource_type: str
    id: str
    version_id: str
    last_updated: datetime
    method: Literal["POST", "PUT", "DELETE"]
    resource: Resource | None = None


def history_bundle(
    base_url: str,
    entries: Sequence[HistoryEntry],
    *,
    total: int | None = None,
    self_url: str | None = None,
    next_url: str | None = None,
) -> Resource:
    """A history Bundle, newest first as given. `total` defaults to the number of entries."""
    base = base_url.rstrip("/")
    out: list[Resource] = []
    for e in entries:
        entry: Resource = {"fullUrl": f"{base}/{e.resource_type}/{e.id}"}
        if e.resource is not None and e.method != "DELETE":
            entry["resource"] = e.resource
        url = e.resource_type if e.method == "POST" else f"{e.resource_type}/{e.id}"
        # A first version was a creation; a deletion has no body to return.
        status = 204 if e.method == "DELETE" else 201 if e.version_id == "1" else 200
        entry["request"] = {"method": e.method, "url": url}
        entry["response"] = {
            "status": _status(status),
            "etag": f'W/"{e.version_id}"',
            "lastModified": instant(e.last_updated),
        }
        out.append(entry)
    bundle: Resource = {
        "resourceType": "Bundle",
        "type": "history",
        "total": len(entries) if total is None else total,
    }
    links = [("self", self_url), ("next", next_url)]
    if any(url for _, url in links):
        bundle["link"] = [{"relation": rel, "url": url} for rel, url in links if url]
    bundle["entry"] = out
    return bundle


@dataclass(frozen=True)
class ResponseEntry:
    """Outcome of one entry of a transaction or batch. `location` is "Type/id/_history/v";
    `etag` is the bare version id (rendered W/"v"); `outcome` an OperationOutcome for errors."""

    status: int
    location: str | None = None
    etag: str | None = None
    last_modified: datetime | None = None
    resource: Resource | None = None
    outcome: Resource | None = None
    full_url: str | None = None


def response_bundle(
    bundle_type: Literal["transaction-response", "batch-response"],
    entries: Sequence[ResponseEntry],
) -> Resource:
    out: list[Resource] = []
    for e in entries:
        response: Resource = {"status": _status(e.status)}
        if e.location:
            response["location"] = e.location
        if e.etag:
            response["etag"] = f'W/"{e.etag}"'
        if e.last_modified is not None:
            response["lastModified"] = instant(e.last_modified)
        if e.outcome is not None:
            response["outcome"] = e.outcome
        entry: Resource = {}
        if e.full_url:
            entry["fullUrl"] = e.full_url
        if e.resource is not None:
            entry["resource"] = e.resource
        entry["response"] = response
        out.append(entry)
    return {"resourceType": "Bundle", "type": bundle_type, "entry": out}


def instant(moment: datetime) -> str:
    """FHIR instant in UTC with milliseconds: "2024-08-06T18:12:57.123Z"."""
    if moment.tzinfo is None:
        raise ValueError("a FHIR instant needs an aware datetime")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _status(code: int) -> str:
    return f"{code} {HTTPStatus(code).phrase}"


def _full_url(base: str, resource: Resource) -> Resource:
    rid, rtype = resource.get("id"), resource.get("resourceType")
    return {"fullUrl": f"{base}/{rtype}/{rid}"} if rid and rtype else {}
