"""There is one decision point and no way around it: no forged decision, no operator decision
reachable from HTTP, no setting or environment variable that turns the policy off."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import rempart
from rempart.access.decision import Decision
from rempart.access.pdp import Principal, decide
from rempart.access.roles import Role
from rempart.access.scope import Everyone

SRC = Path(rempart.__file__).parent


def test_a_decision_cannot_be_forged() -> None:
    with pytest.raises(TypeError):
        Decision(
            "x", "clinician", frozenset({"Patient"}), frozenset(), Everyone("x"), "x", object()
        )


def test_the_operator_decision_is_used_only_by_local_bulk_commands() -> None:
    users = sorted(
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if "system_decision" in path.read_text(encoding="utf-8")
    )
    # guard/changes.py: the executor of an approved plant-decoys request (an administrator and
    # a security officer), which writes new decoy Patients and nothing else.
    assert users == [
        "access/pdp.py",
        "guard/changes.py",
        "ingest/importer.py",
        "ingest/seeding.py",
    ]
    issuers = sorted(
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if "_ISSUER" in path.read_text(encoding="utf-8")
    )
    assert issuers == ["access/decision.py", "access/pdp.py"]


def test_no_switch_turns_the_policy_off() -> None:
    switch = re.compile(
        r"(disable|bypass|skip|no)_?(policy|access|pdp)|impersonat|log_?in_?as", re.I
    )
    for path in SRC.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not switch.search(text), path
    # Whatever a principal claims, an administrator's decision covers no patient.
    admin = decide(Principal("a", "a", Role.ADMIN, "Practitioner/x", "Patient/y"))
    assert admin.patients.describe() == "no clinical permission"
    assert not admin.read_types & {"Patient", "Observation", "Encounter"}
