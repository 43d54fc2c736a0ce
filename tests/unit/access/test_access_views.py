"""What a front desk sees of an Encounter, and which lookups count as exact identity traits."""

from __future__ import annotations

import orjson
import pytest

from rempart.access.views import CLINICAL_ELEMENTS, carry_over, is_identity_lookup, redact

HIDDEN = CLINICAL_ELEMENTS["Encounter"]


@pytest.mark.parametrize(
    ("echo", "exact"),
    [
        ([("identifier", "urn:oid:1.2.250.1.213.1.4.10|284127645108946")], True),
        ([("identifier", "284127645108946")], True),
        ([("identifier", "urn:oid:1.2.250.1.213.1.4.10|")], False),
        ([("identifier", "a|1,a|2")], False),  # a list sweeps the hospital: refused
        ([("family:exact", "Dupont"), ("birthdate", "1970-01-01")], True),
        ([("family", "Dupont"), ("birthdate", "1970-01-01")], False),  # prefix search
        ([("family:exact", "Dupont"), ("birthdate", "1970")], False),  # a whole year
        ([("family:exact", "Dupont"), ("birthdate", "ge1970-01-01")], False),
        ([("family:exact", "Dupont")], False),
        ([("name", "Dup")], False),
        ([], False),
        ([("identifier", "x|1"), ("gender", "female")], False),
    ],
)
def test_identity_lookup(echo: list[tuple[str, str]], exact: bool) -> None:
    assert is_identity_lookup("Patient", echo) is exact
    assert is_identity_lookup("Coverage", echo) is False


def test_redaction_and_carry_over() -> None:
    body = {
        "resourceType": "Encounter",
        "status": "finished",
        "reasonCode": [{"text": "x"}],
        "diagnosis": [],
        "period": {"start": "2026"},
    }
    shown = orjson.loads(redact(HIDDEN, orjson.dumps(body)))
    assert "reasonCode" not in shown
    assert "diagnosis" not in shown
    assert shown["period"] == body["period"]
    untouched = orjson.dumps({"resourceType": "Encounter", "status": "planned"})
    assert redact(HIDDEN, untouched) is untouched
    update = {"resourceType": "Encounter", "status": "finished"}
    carry_over(HIDDEN, update, body)
    assert update["reasonCode"] == body["reasonCode"]
