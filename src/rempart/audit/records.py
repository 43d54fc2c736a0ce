"""The audit record: one event, as every package reports it to the audit log.

This is the contract between the packages that produce events (services, identity, access,
guard) and the log that stores them (`rempart.audit`). Identifiers only: never a name, a note or
any other patient content.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from rempart.clock import now_micros


@dataclass(frozen=True)
class AuditRecord:
    action: str  # e.g. "read", "search", "create", "login", "mfa", "break-glass", "admin-approve"
    outcome: str  # "success" | "denied" | "failed" | "error"
    ip: str
    user_agent: str
    account_id: str | None = None
    username: str | None = None
    role: str | None = None
    practitioner: str | None = None  # "Practitioner/<id>"
    session_id: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    patient: str | None = None  # the patient id the data belongs to
    reason: str | None = None  # the care relationship or the break-the-glass reason
    detail: str | None = None
    request_id: str | None = None  # groups the records of one request (a search's patients)
    at: int = field(default_factory=now_micros)  # microseconds since the epoch, UTC


class AuditSink(Protocol):
    """Appends records durably. `record` returns only once the records are committed; if it
    cannot, it raises and the caller must not release the data it was about to send.

    Two modes set by the caller's context (`rempart.audit.durable`), so that a wrapper which
    forwards `record` (the guard's) needs to know neither: under `run_audited` the route
    awaits the commit on the event loop; under `joined(conn)` the records are appended inside
    the caller's open transaction (a write and its trace commit together or not at all)."""

    def record(self, *records: AuditRecord) -> None: ...
