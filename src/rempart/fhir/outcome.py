"""OperationOutcome: how every error, and some successes, are reported to a FHIR client."""

from __future__ import annotations

from typing import Any

from rempart.errors import RempartError

SEVERITIES = frozenset({"fatal", "error", "warning", "information"})


def operation_outcome(
    severity: str, code: str, diagnostics: str, expression: str | None = None
) -> dict[str, Any]:
    """One-issue OperationOutcome. `code` is a FHIR IssueType ("invalid", "not-found"...)."""
    if severity not in SEVERITIES:
        raise ValueError(f"unknown OperationOutcome severity {severity!r}")
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = [expression]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def outcome_for(error: RempartError) -> dict[str, Any]:
    """The OperationOutcome of a client-facing error (its message is written for the client)."""
    return operation_outcome("error", error.code, error.message, error.expression)
