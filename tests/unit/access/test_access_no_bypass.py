"""There is one decision point and no way around it: no forged decision, no operator decision
reachable from HTTP, no setting or environment variable that turns the policy off."""

from __future__ import annotations

import copy
import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

import rempart
from rempart.access.decision import Decision, issued
from rempart.access.pdp import Principal, decide
from rempart.access.permissions import ALL_TYPES
from rempart.access.roles import Role
from rempart.access.scope import Everyone
from rempart.fhir.query import parse_search
from rempart.identity.tables import account
from rempart.store.search import matching_compartments, search
from rempart.wiring import Services

SRC = Path(rempart.__file__).parent


def test_a_decision_cannot_be_forged() -> None:
    with pytest.raises(TypeError):
        Decision(
            "x", "clinician", frozenset({"Patient"}), frozenset(), Everyone("x"), "x", object()
        )
    # Nor widened from a real one: `replace` would otherwise copy the PDP's token along.
    admin = decide(Principal("a", "a", Role.ADMIN, None, None))
    with pytest.raises(ValueError, match="_issuer"):
        dataclasses.replace(admin, read_types=ALL_TYPES, patients=Everyone("widened"))
    with pytest.raises(TypeError):
        dataclasses.replace(admin, read_types=ALL_TYPES, _issuer=object())
    assert copy.copy(admin).patients == admin.patients  # a copy is the same decision


def test_only_an_issued_decision_passes_the_store_check() -> None:
    real = decide(Principal("c", "c", Role.CLINICIAN, None, None))
    assert issued(real) is real

    class LookAlike:
        restricted = False
        read_types = ALL_TYPES

        def may_read(self, *_args: object, **_kw: object) -> bool:
            return True

    for fake in (LookAlike(), None, "system"):
        with pytest.raises(TypeError):
            issued(fake)


def test_the_store_refuses_a_look_alike_at_every_entry(services: Services) -> None:
    """Reads, history, writes and searches all check the decision's type before any row."""

    class LookAlike:
        restricted = False
        read_types = ALL_TYPES

        def may_read(self, *_args: object, **_kw: object) -> bool:
            return True

        def may_write(self, *_args: object, **_kw: object) -> bool:
            return True

    fake: Any = LookAlike()
    store = services.store
    body = {"resourceType": "Patient", "id": "p1", "name": [{"family": "Faux"}]}
    query = parse_search("Patient", [])
    calls = [
        lambda: store.read(fake, "Patient", "p1"),
        lambda: store.history(fake, "Patient", "p1"),
        lambda: store.vread(fake, "Patient", "p1", 1),
        lambda: search(store, fake, query),
        lambda: matching_compartments(store, fake, query, limit=10),
    ]
    for call in calls:
        with pytest.raises(TypeError, match="issued by the policy"):
            call()
    with services.engine.begin() as conn:
        with pytest.raises(TypeError, match="issued by the policy"):
            store.check_write(conn, fake, body, client_id=True)
        with pytest.raises(TypeError, match="issued by the policy"):
            store.create_in(conn, fake, body, res_id="p1")
        with pytest.raises(TypeError, match="issued by the policy"):
            store.update_in(conn, fake, "Patient", "p1", body)


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
    # The directory executor's decision (no patient at all) serves the approved move-unit only.
    movers = sorted(
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if "directory_decision" in path.read_text(encoding="utf-8")
    )
    assert movers == ["access/directory.py", "access/pdp.py"]
    openers = sorted(
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if "approved_move" in path.read_text(encoding="utf-8")
    )
    assert openers == ["access/directory.py", "access/relations.py"]
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
    # The decision and the store read nothing from the environment or a configuration file:
    # their only settings are the bounded rows that approved requests write.
    environment = re.compile(r"os\.environ|getenv|load_settings|tomllib|rempart\.config\b")
    for package in ("access", "service", "store"):
        for path in (SRC / package).rglob("*.py"):
            assert not environment.search(path.read_text(encoding="utf-8")), path
    # Whatever a principal claims, an administrator's decision covers no patient.
    admin = decide(Principal("a", "a", Role.ADMIN, "Practitioner/x", "Patient/y"))
    assert admin.patients.describe() == "no clinical permission"
    assert not admin.read_types & {"Patient", "Observation", "Encounter"}


def test_no_account_comes_with_the_installation(services: Services) -> None:
    """No shared or built-in account (an "admin" with a known password, a ward login): a fresh
    database has none; each account is then made for one holder (four-eyes, codes sent to that
    holder only: `test_access_requests.py`), and the synthetic hospital's are one per person
    (`tests/unit/seed/test_seed_accounts.py`)."""
    with services.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(account)).scalar_one() == 0
