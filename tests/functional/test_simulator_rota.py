"""`rempart simulate --clinicians N --normal-only`: long runs of normal traffic, made small.

One simulated day of a 200-patient hospital whose 30 doctors work the rota (rota.py), over real
HTTP against the real server and guard, no attacker; and the command's options reaching the
runner.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from rempart.cli import app
from rempart.simulate import normal, runner
from rempart.simulate.actor import Exchange
from rempart.simulate.playbook import Playbook
from rempart.simulate.report import Report

DOCTORS = 30


def test_a_rota_day_of_normal_traffic() -> None:
    cast: list[normal.Worker] = []

    def inspect(workers: list[normal.Worker], playbooks: list[Playbook]) -> None:
        assert playbooks == []
        cast.extend(workers)

    report = runner.simulate(
        200, seed=5, days=1, hooks=runner.Hooks(inspect=inspect), clinicians=DOCTORS, attacks=False
    )
    assert report.as_json()["playbooks"] == []
    doctors = [w for w in cast if w.actor.creds.role == "clinician"]
    assert len(doctors) == DOCTORS
    # The seed's 22 unit doctors (none kept back as an attacker) and 8 provisioned ones, each
    # a member of both units of their pair (or of its own unit, for the odd one out).
    extra = [w for w in doctors if w.actor.creds.username.startswith("dr.")]
    assert len(extra) == DOCTORS - 22
    assert all(1 <= len(w.actor.creds.units) <= 2 for w in doctors)
    assert sum(len(w.actor.creds.units) == 2 for w in doctors) >= 20
    # A weekday: every doctor not on leave, plus 11 on call; a weekend: 11 by day, 11 at night.
    assert report.clinician_days >= 22
    assert report.clinician_days == sum(w.days for w in doctors)
    worked = [w for w in doctors if w.days]
    assert any(w.actor.creds.username.startswith("dr.") for w in worked)
    assert all(w.actor.logins >= 1 for w in worked)  # every shift signed in over HTTP
    assert report.normal_requests >= 10 * report.clinician_days
    # Admissions are the front desks' alone, and every one is accepted: the seed's two desks
    # and the one the runner provisions for the establishment the seed gave none.
    desks = [w for w in cast if w.actor.creds.role == "secretary"]
    assert len({w.actor.creds.units for w in desks}) == len(desks) == 3
    assert any(w.actor.creds.username.startswith("bureau.entrees.") for w in desks)
    admissions = [e for w in desks for e in w.actor.log if _admission(e)]
    assert admissions
    assert {e.status for e in admissions} == {201}
    assert [e for w in doctors for e in w.actor.log if _admission(e)] == []  # doctors never admit
    # Every request a worker made was answered; no session of theirs was cut.
    assert report.false_containments == 0, [w.containments for w in cast if w.containments]
    assert report.misses() == []


def _admission(exchange: Exchange) -> bool:
    return exchange.method == "POST" and exchange.path == "/fhir/Encounter"


def test_the_command_passes_the_options(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake(patients: int, seed: int, days: int, hooks: object, **kwargs: Any) -> Report:
        seen.update(patients=patients, seed=seed, days=days, **kwargs)
        return Report(patients, [], clinician_days=3000, false_containments=0, false_alerts=2)

    monkeypatch.setattr(runner, "simulate", fake)
    cli = CliRunner()
    result = cli.invoke(
        app,
        [
            "simulate",
            "--patients",
            "500",
            "--days",
            "90",
            "--clinicians",
            "50",
            "--normal-only",
            "--no-keys",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert seen == {
        "patients": 500,
        "seed": 0,
        "days": 90,
        "clinicians": 50,
        "attacks": False,
        "keys": False,
    }
    doc = json.loads(result.stdout[result.stdout.index("{") :])
    assert doc["normal_traffic"] == {
        "clinician_days": 3000,
        "false_containments": 0,
        "false_alerts": 2,
    }
    # The default run: the seed's doctors, attacks played, the clinicians' keys issued.
    seen.clear()
    assert cli.invoke(app, ["simulate", "--patients", "500"]).exit_code == 0
    assert seen == {
        "patients": 500,
        "seed": 0,
        "days": 3,
        "clinicians": None,
        "attacks": True,
        "keys": True,
    }
    assert cli.invoke(app, ["simulate", "--clinicians", "0"]).exit_code == 2
