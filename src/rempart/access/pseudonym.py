"""Pseudonymisation of an export: what a research cohort needs, without who the patients are.

Kept: codes, values, dates of care, the structure of the record, links to the hospital
directory (practitioners, units). Removed: names, identifiers (INS, NIR, any `identifier` or
`...Identifier`, a device's serial and UDI), contact details (telecom, address, contacts),
photos and every attachment (a report's `presentedForm`, a document's content, a
`valueAttachment`: they carry whole letters, headed with the patient's name), free text
(notes, narratives, comments, descriptions, a report's conclusion, `valueString`, patient
instructions, a care team's name), signatures, extensions (birthplace and similar), and the
`display` text of references (it often repeats a name). Birth and death dates keep their year
only. Every id of a patient's record is replaced by a keyed HMAC under a key drawn for this one
export, so two exports cannot be linked to each other and the ids in the file cannot be matched
to the database's.

This is pseudonymisation, not anonymisation: dates of care and rare codes can still single a
person out, and the file remains personal health data under the GDPR. It is the default of every
export; an identified export is possible only when the approval says so explicitly.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from rempart.access.permissions import PATIENT_DATA_TYPES

# Anywhere in a resource (and any key ending in "Identifier": masterIdentifier,
# preAdmissionIdentifier, distinctIdentifier...).
_DROP_ANYWHERE = frozenset(
    {
        "address",
        "comment",
        "description",
        "extension",
        "identifier",
        "modifierExtension",
        "note",
        "patientInstruction",
        "photo",
        "signature",
        "telecom",
        "valueAttachment",
        "valueString",
    }
)
# At the top level of a resource.
_DROP_TOP = frozenset({"text", "meta", "contained", "implicitRules"})
_DROP_BY_TYPE: dict[str, frozenset[str]] = {
    "CareTeam": frozenset({"name"}),
    "Coverage": frozenset({"subscriberId", "dependent"}),
    "Device": frozenset({"contact", "lotNumber", "serialNumber", "udiCarrier", "url"}),
    "DiagnosticReport": frozenset({"conclusion", "presentedForm"}),
    "DocumentReference": frozenset({"content"}),
    "Patient": frozenset({"name", "contact", "link"}),
}
_YEAR_ONLY: dict[str, frozenset[str]] = {
    "Patient": frozenset({"birthDate", "deceasedDateTime"}),
}


class Pseudonymiser:
    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("a pseudonymisation key is at least 256 bits")
        self._key = key

    def pseudonym(self, res_type: str, res_id: str) -> str:
        mac = hmac.new(self._key, f"{res_type}/{res_id}".encode(), hashlib.sha256)
        return mac.hexdigest()[:32]

    def resource(self, body: dict[str, Any]) -> dict[str, Any]:
        res_type = str(body.get("resourceType"))
        drop = _DROP_TOP | _DROP_BY_TYPE.get(res_type, frozenset())
        out: dict[str, Any] = {}
        for key, value in body.items():
            if key in drop or _dropped(key):
                continue
            if key == "id" and isinstance(value, str):
                out["id"] = self.pseudonym(res_type, value)
            elif key in _YEAR_ONLY.get(res_type, frozenset()) and isinstance(value, str):
                out[key] = value[:4]
            else:
                out[key] = self._walk(value)
        return out

    def _walk(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self._walk(v) for v in value if not _attachment(v)]
        if not isinstance(value, dict):
            return value
        if "reference" in value and isinstance(value["reference"], str):
            return self._reference(value)
        return {
            k: self._walk(v) for k, v in value.items() if not _dropped(k) and not _attachment(v)
        }

    def _reference(self, ref: dict[str, Any]) -> dict[str, Any]:
        kind, _, ident = str(ref["reference"]).partition("/")
        if kind in PATIENT_DATA_TYPES and ident:
            return {"reference": f"{kind}/{self.pseudonym(kind, ident)}"}
        if kind and ident and "/" not in ident and ":" not in kind:
            return {"reference": f"{kind}/{ident}"}  # the hospital directory: kept
        return {}  # absolute URLs, urn: and odd references can carry anything: dropped


def _dropped(key: str) -> bool:
    return key in _DROP_ANYWHERE or key.endswith("Identifier")


def _attachment(value: Any) -> bool:
    """An Attachment, wherever it sits: its `data` or `url` is a whole document. (A
    SampledData also has `data`, but measurements, and always an `origin`.)"""
    if not isinstance(value, dict):
        return False
    return "contentType" in value or ("data" in value and "origin" not in value)
