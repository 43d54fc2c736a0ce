"""The attack simulator at CI size: every playbook runs over real HTTP and every target holds.

A fresh 1,000-patient hospital (seeded in a temporary directory, served by uvicorn on a free
port), two simulated days of ward rounds, admissions and patients at home, and every attack
playbook among them. This test fails, naming each miss, when any issue #7 target is missed:
0 records for administrators, patient accounts and the stolen database file; at most 25
out-of-scope records per clinician or front-desk attacker; containment within 60 simulated
seconds of a scrape's start; under 1 false containment per 1,000 clinician-days. The
clinicians hold security keys, as the simulator issues them by default; the second test plays a
hospital without them.
"""

from __future__ import annotations

from rempart.simulate import normal
from rempart.simulate.report import Report
from rempart.simulate.runner import Hooks, simulate

CI_PATIENTS = 1000
PLAYBOOKS = {
    "admin-stolen-password",
    "admin-live-session",
    "clinician-fast-scrape",
    "clinician-slow-and-low",
    "clinician-search-scrape",
    "clinician-break-glass-scrape",
    "secretary-demographics-scrape",
    "patient-probing-ids",
    "stolen-database-file",
}
FIELDS = {
    "name",
    "attacker",
    "records_leaked",
    "requests",
    "contained",
    "seconds_to_containment",
    "alerts",
}


def _check_shape(report: Report) -> None:
    doc = report.as_json()
    assert set(doc) == {"patients", "playbooks", "normal_traffic"}
    assert doc["patients"] == CI_PATIENTS
    assert {p["name"] for p in doc["playbooks"]} == PLAYBOOKS
    for playbook in doc["playbooks"]:
        assert set(playbook) == FIELDS
        if playbook["name"] != "stolen-database-file":
            assert playbook["requests"] > 5, playbook  # the attack was actually played
    assert set(doc["normal_traffic"]) == {"clinician_days", "false_containments", "false_alerts"}


def test_simulated_attacks_meet_the_targets() -> None:
    cast: list[normal.Worker] = []
    report = simulate(
        CI_PATIENTS, seed=7, days=2, hooks=Hooks(inspect=lambda w, _p: cast.extend(w))
    )
    _check_shape(report)
    # Admissions are the front desks' (one provisioned where the seed's desk is an attacker
    # or absent); no normal doctor posts one, so none is refused as an admission by a doctor.
    admits = [
        (w.actor.creds.role, e.status)
        for w in cast
        for e in w.actor.log
        if e.method == "POST" and e.path == "/fhir/Encounter"
    ]
    assert admits
    assert set(admits) == {("secretary", 201)}
    # Normal traffic is real work, not a token gesture: every normal clinician, both days.
    assert report.clinician_days >= 30
    assert report.normal_requests >= 20 * report.clinician_days
    slow = next(p for p in report.playbooks if p.name == "clinician-slow-and-low")
    # The clinicians hold security keys; the slow-and-low attacker holds the password and the
    # TOTP secret only: its first refusal asks for the key, and it gets nothing more.
    assert slow.seconds_to_containment is not None
    assert slow.seconds_to_containment <= 60
    assert "guard-unconfirmed" in slow.alert_kinds
    assert report.misses() == [], "targets missed:\n" + "\n".join(report.misses())


def test_without_security_keys_the_slow_attacker_is_locked_within_the_hour() -> None:
    """A hospital that has not handed out keys: the one target missed, stated here and in the
    issue's note. The attacker sends one request every 4 to 14 simulated minutes with a valid
    TOTP code, so no rule contains it within 60 s of its first read without containing
    ordinary clinicians; what is pinned instead is the staff cap on what leaks and the lock by
    the refusals-per-day rule within its first working hour."""
    report = simulate(CI_PATIENTS, seed=7, days=1, keys=False)
    _check_shape(report)
    slow = next(p for p in report.playbooks if p.name == "clinician-slow-and-low")
    assert slow.contained
    assert slow.seconds_to_containment is not None
    assert 60 < slow.seconds_to_containment <= 3600
    assert slow.records_leaked <= 25
    assert "guard-unconfirmed" not in slow.alert_kinds
    misses = [m for m in report.misses() if not m.startswith("clinician-slow-and-low: contained")]
    assert not misses, "targets missed:\n" + "\n".join(misses)
