"""Audit records as FHIR R4 AuditEvent resources, and the AuditEvent search parameters.

Mapping (IHE BALP style): `type` is a RESTful operation (or a login / security event),
`subtype` our action, `action` the CRUDE letter, `outcome` 0 / 4 / 8, one `agent` (the account,
its role, its practitioner, the network address), one `entity` for the patient and one for the
resource. `id` is the record's position in the Merkle log, so an auditor can ask for its
inclusion proof.
"""

from __future__ import annotations

from typing import Any

from rempart.audit.query import EventQuery
from rempart.clock import datetime_to_micros, micros_to_iso
from rempart.errors import InvalidSearch
from rempart.fhir.capability import AUDIT_EVENT_SEARCH
from rempart.fhir.dates import parse_range

CRUDE = {
    "create": "C",
    "read": "R",
    "vread": "R",
    "history": "R",
    "search": "E",
    "update": "U",
    "transaction": "E",
    "batch": "E",
    "export": "R",
    "break-glass": "E",
}
REST_ACTIONS = {"create", "read", "vread", "history", "search", "update", "transaction", "batch"}
OUTCOME_CODE = {"success": "0", "denied": "4", "failed": "4", "error": "8"}
CODE_OUTCOMES = {"0": {"success"}, "4": {"denied", "failed"}, "8": {"error"}, "12": set()}
_DCM = "http://dicom.nema.org/resources/ontology/DCM"
_TYPE_REST = {
    "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
    "code": "rest",
    "display": "RESTful Operation",
}
_TYPE_LOGIN = {"system": _DCM, "code": "110114", "display": "User Authentication"}
_TYPE_SECURITY = {"system": _DCM, "code": "110113", "display": "Security Alert"}
# What the CapabilityStatement advertises, plus paging and format.
_SEARCH_PARAMS = {name for name, _, _ in AUDIT_EVENT_SEARCH} | {"_count", "_before", "_format"}
MAX_COUNT = 500


def audit_event(row: Any, *, username: str | None, patient_view: bool = False) -> dict[str, Any]:
    """One record as an AuditEvent. `patient_view` leaves out the network and session details
    a patient has no need of (the staff member's IP address is that person's data)."""
    action = str(row.action)
    kind = (
        _TYPE_REST
        if action in REST_ACTIONS
        else (
            _TYPE_LOGIN
            if action.startswith(("login", "mfa", "logout", "lockout"))
            else _TYPE_SECURITY
        )
    )
    agent: dict[str, Any] = {"requestor": True}
    if row.role:
        agent["role"] = [{"text": row.role}]
    if row.practitioner:
        agent["who"] = {"reference": row.practitioner}
    elif row.account_id:
        agent["who"] = {"identifier": {"system": "urn:rempart:account", "value": row.account_id}}
    if row.account_id:
        agent["altId"] = row.account_id
    if username:
        agent["name"] = username
    if not patient_view:
        agent["network"] = {"address": row.ip, "type": "2"}
        if row.session_id:
            agent["policy"] = [f"urn:rempart:session:{row.session_id}"]
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(row.seq),
        "type": kind,
        "subtype": [{"system": "urn:rempart:audit:action", "code": action}],
        "action": CRUDE.get(action, "E"),
        "recorded": micros_to_iso(row.at),
        "outcome": OUTCOME_CODE.get(row.outcome, "8"),
        "agent": [agent],
        "source": {
            "observer": {"display": "rempart"},
            "type": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                    "code": "4",
                    "display": "Application Server",
                }
            ],
        },
    }
    entities: list[dict[str, Any]] = []
    if row.patient:
        entities.append(
            {
                "what": {"reference": f"Patient/{row.patient}"},
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "1",
                    "display": "Person",
                },
                "role": {
                    "system": "http://terminology.hl7.org/CodeSystem/object-role",
                    "code": "1",
                    "display": "Patient",
                },
            }
        )
    if row.resource_type and row.resource_id and row.resource_type != "Patient":
        entities.append(
            {
                "what": {"reference": f"{row.resource_type}/{row.resource_id}"},
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "2",
                    "display": "System Object",
                },
            }
        )
    elif row.resource_type and not row.patient:
        entities.append({"what": {"display": row.resource_type}})
    if entities:
        event["entity"] = entities
    return event


def with_private(event: dict[str, Any], private: dict[str, str], outcome: str) -> dict[str, Any]:
    """Add the unsealed why (purposeOfEvent) and, for refusals, our own error message."""
    if private.get("reason"):
        event["purposeOfEvent"] = [{"text": private["reason"]}]
    if outcome != "success" and private.get("detail"):
        event["outcomeDesc"] = private["detail"]
    return event


def parse_event_query(params: list[tuple[str, str]]) -> tuple[EventQuery, str | None]:
    """The AuditEvent search, and the `agent-name` to resolve (the caller owns the accounts)."""
    q = EventQuery()
    agent_name: str | None = None
    for name, value in params:
        if name not in _SEARCH_PARAMS:
            raise InvalidSearch(
                f"AuditEvent has no search parameter {name!r}; supported: "
                + ", ".join(sorted(_SEARCH_PARAMS - {"_format"}))
            )
        text = value.strip()
        if not text and name != "_format":
            raise InvalidSearch(f"{name} needs a value")
        agent_name = _apply(q, name, text, agent_name)
    return q, agent_name


def _apply(q: EventQuery, name: str, value: str, agent_name: str | None) -> str | None:
    if name == "agent":
        _agent(q, value)
    elif name == "agent-name":
        agent_name = value
    elif name in ("patient", "entity"):
        q.patient = _patient(value, name)
    elif name == "date":
        _date(q, value)
    elif name in ("action", "subtype"):
        q.actions = _intersect(q.actions, _actions(value))
    elif name == "outcome":
        q.outcomes = _intersect(q.outcomes, _outcomes(value))
    elif name == "_count":
        q.count = _int(value, name, 1, MAX_COUNT)
    elif name == "_before":
        q.before_seq = _int(value, name, 0, 2**62)
    return agent_name


def _int(value: str, name: str, lo: int, hi: int) -> int:
    if not value.isdigit() or not lo <= int(value) <= hi:
        raise InvalidSearch(f"{name} must be a whole number from {lo} to {hi}")
    return int(value)


def _intersect(current: set[str] | None, new: set[str]) -> set[str]:
    return new if current is None else current & new


def _ident(value: str, what: str) -> str:
    if not value or len(value) > 64 or not all(c.isalnum() or c in "-." for c in value):
        raise InvalidSearch(f"{what} {value[:70]!r} is not a valid id")
    return value


def _agent(q: EventQuery, value: str) -> None:
    if value.startswith("Practitioner/"):
        q.practitioner = "Practitioner/" + _ident(value.removeprefix("Practitioner/"), "agent")
    else:
        bare = value.rsplit("/", maxsplit=1)[-1] if value.count("/") == 1 else value
        q.account_ids = [_ident(bare, "agent")]


def _patient(value: str, name: str) -> str:
    if "/" in value and not value.startswith("Patient/"):
        raise InvalidSearch(f"{name} must be Patient/<id> or <id>")
    return _ident(value.removeprefix("Patient/"), name)


def _date(q: EventQuery, value: str) -> None:
    prefix, text = ("eq", value)
    if value[:2].isalpha():
        prefix, text = value[:2], value[2:]
    if prefix not in ("eq", "gt", "ge", "lt", "le"):
        raise InvalidSearch(f"date prefix {prefix!r} is not supported (eq, gt, ge, lt, le)")
    span = parse_range(text)
    if span is None:
        raise InvalidSearch(f"date {text!r} is not a FHIR date or dateTime")
    lo, hi = (datetime_to_micros(d) for d in span)
    since, until = {
        "eq": (lo, hi),
        "gt": (hi, None),
        "ge": (lo, None),
        "lt": (None, lo),
        "le": (None, hi),
    }[prefix]
    if since is not None:
        q.since = since if q.since is None else max(q.since, since)
    if until is not None:
        q.until = until if q.until is None else min(q.until, until)


def _actions(value: str) -> set[str]:
    out: set[str] = set()
    for part in value.split(","):
        code = part.split("|")[-1].strip()
        if code in ("C", "R", "U", "D", "E"):
            out |= {a for a, letter in CRUDE.items() if letter == code}
        elif code and len(code) <= 40:
            out.add(code)
        else:
            raise InvalidSearch(f"action {part!r} is not a CRUDE letter or an action name")
    return out


def _outcomes(value: str) -> set[str]:
    out: set[str] = set()
    for part in value.split(","):
        code = part.split("|")[-1].strip()
        if code in CODE_OUTCOMES:
            out |= CODE_OUTCOMES[code]
        elif code in OUTCOME_CODE:
            out.add(code)
        else:
            raise InvalidSearch(
                f"outcome {part!r} is not 0, 4, 8, 12 or success/denied/failed/error"
            )
    return out
