"""Attacks from inside the care system: hijacked clinician, front-desk and patient accounts.

Each attacker knows every patient id of the hospital (a worst case: ids leak through letters,
URLs, an earlier breach) and, for the front desk, the names and birth dates of a list of people
(the kind of list the Mediboard breach put on sale). A *live session* attacker holds only the
bearer token (real-time phishing right after the victim's sign-in, so the second factor is fresh
for its first minutes); a *credentials* attacker holds the password and the TOTP secret (an
infostealer's haul), never the security key the clinician's account also holds (a device in
the holder's pocket, `runner.issue_keys`), and signs in again whenever the session ends. None
of them knows the guard's thresholds: their pace is what a script or a patient person would do.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Generator

from rempart import clock
from rempart.simulate.actor import REFUSED, Actor, Reply
from rempart.simulate.engine import HOUR, Sim, Steps, until
from rempart.simulate.playbook import Playbook
from rempart.simulate.world import NIR_SYSTEM, Unit

GIVE_UP_AFTER = 3  # refused canaries in a row before the attacker stops trying
STREAK = 5  # consecutive refusals after which an attacker checks whether it was cut off
FAST_LIMIT = 600  # patients tried by the fast scraper
BG_REASON = "Urgence vitale: patient transféré, antécédents nécessaires immédiatement"


def unit_canary(unit: Unit) -> Callable[[Actor], Reply]:
    def canary(actor: Actor) -> Reply:
        params = {"service-provider": unit.org, "_count": "1"}
        return actor.call("GET", "/fhir/Encounter", params=params, canary=True)

    return canary


def own_record_canary(actor: Actor) -> Reply:
    own = actor.creds.patient or "Patient/unknown"
    return actor.call("GET", f"/fhir/{own}", canary=True)


class Cutoff:
    """Tracks an attacker's refusals; tells the playbook when the server has stopped serving."""

    def __init__(self, actor: Actor, canary: Callable[[Actor], Reply]) -> None:
        self.actor = actor
        self.canary = canary
        self.streak = 0
        self.failed_probes = 0

    def after(self, reply: Reply) -> bool:
        """True when the attacker is cut off (it then stops, as a script would)."""
        if reply.ok:
            self.streak = 0
            return False
        if reply.status not in REFUSED:
            return False
        self.streak += 1
        suspicious = reply.status in (401, 423, 429) or reply.step_up
        if not suspicious and self.streak < STREAK:
            return False
        self.streak = 0
        if self.actor.probe(self.canary):
            self.failed_probes = 0
            return False
        self.failed_probes += 1
        return self.failed_probes >= GIVE_UP_AFTER

    def confirm(self) -> Steps:
        """A last check at the end of the attack, so a cut on the last request is seen."""
        for _ in range(GIVE_UP_AFTER):
            if self.actor.probe(self.canary):
                return
            yield 15.0


def _hijack(actor: Actor) -> bool:
    """The victim signs in; the attacker takes the session and nothing else."""
    ok = actor.login()
    actor.holds_password = False
    actor.holds_totp = False
    actor.holds_key = False
    return ok


def _take_session(
    sim: Sim, pb: Playbook, canary: Callable[[Actor], Reply]
) -> Generator[float, None, Cutoff | None]:
    """The victim signs in and the attacker takes over: the cut-off watch, or None when the
    victim's sign-in failed (nothing to attack)."""
    actor = pb.actor
    assert actor is not None
    if not _hijack(actor):
        pb.notes.append("victim sign-in failed")
        return None
    yield 2.0
    pb.begin(sim.oracle)
    return Cutoff(actor, canary)


def _wind_up(sim: Sim, pb: Playbook, cut: Cutoff) -> Steps:
    """A last check that the attacker was cut off, then what it ended up holding."""
    yield from cut.confirm()
    pb.sample(sim.oracle)


def _ids(sim: Sim, actor: Actor) -> list[str]:
    ids = [p.id for p in sim.world.patients]
    actor.rng.shuffle(ids)
    return ids


def fast_scrape(sim: Sim, pb: Playbook, unit: Unit) -> Steps:
    cut = yield from _take_session(sim, pb, unit_canary(unit))
    if cut is None:
        return
    actor = cut.actor
    for pid in _ids(sim, actor)[:FAST_LIMIT]:
        reply = actor.call("GET", f"/fhir/Patient/{pid}")
        if cut.after(reply):
            break
        if reply.ok:
            yield actor.rng.uniform(0.1, 0.4)
            if cut.after(actor.call("GET", "/fhir/Observation", params={"patient": pid})):
                break
        yield actor.rng.uniform(0.1, 0.5)
    yield from _wind_up(sim, pb, cut)


def search_scrape(sim: Sim, pb: Playbook, unit: Unit) -> Steps:
    cut = yield from _take_session(sim, pb, unit_canary(unit))
    if cut is None:
        return
    actor = cut.actor
    queries: list[tuple[str, dict[str, str]]] = [
        ("Patient", {"name": a + b, "_count": "200"}) for a in "bcdfglmprst" for b in "aeiou"
    ]
    queries += [
        (t, {"_count": "200", "_offset": str(o)})
        for t in ("Patient", "Encounter", "Observation", "Condition", "MedicationRequest")
        for o in range(0, 1000, 200)
    ]
    queries += [("Patient", {"gender": g, "_count": "200"}) for g in ("female", "male")]
    queries += [
        ("Patient", {"birthdate": f"ge{y}-01-01", "_count": "200"}) for y in range(1930, 2020, 10)
    ]
    for res_type, params in queries:
        if cut.after(actor.call("GET", f"/fhir/{res_type}", params=params)):
            break
        yield actor.rng.uniform(0.5, 2.0)
    yield from _wind_up(sim, pb, cut)


def break_glass_scrape(sim: Sim, pb: Playbook, unit: Unit) -> Steps:
    cut = yield from _take_session(sim, pb, unit_canary(unit))
    if cut is None:
        return
    actor = cut.actor
    for pid in _ids(sim, actor)[:200]:
        body = {"patient": f"Patient/{pid}", "reason": BG_REASON}
        granted = actor.call("POST", "/access/break-glass", body=body)
        if cut.after(granted):
            break
        yield actor.rng.uniform(1, 4)
        for res_type in ("Patient", "Observation", "Condition"):
            path = f"/fhir/Patient/{pid}" if res_type == "Patient" else f"/fhir/{res_type}"
            params = None if res_type == "Patient" else {"patient": pid}
            if cut.after(actor.call("GET", path, params=params)):
                yield from _wind_up(sim, pb, cut)
                return
            yield actor.rng.uniform(0.5, 2)
    yield from _wind_up(sim, pb, cut)


def slow_scrape(sim: Sim, pb: Playbook, unit: Unit, days: int) -> Steps:
    """Credentials in hand, a few dozen patients a day in office hours, one break-the-glass a
    day with a plausible reason, for days. The scrape starts at its first read (`begin`): the
    sign-in before it is what the account's holder does every morning."""
    actor = pb.actor
    assert actor is not None
    actor.holds_key = False  # an infostealer carries the password and the TOTP secret away
    rng = actor.rng
    ids = iter(_ids(sim, actor))
    cut = Cutoff(actor, unit_canary(unit))
    for day in range(days):
        yield until(sim.at(day, 9.0 + rng.uniform(0, 1)))
        if not actor.login():
            pb.begin(sim.oracle)
            yield 60.0
            if not actor.login():
                cut.canary(actor)  # refused too: the account no longer signs in (contained)
                return
        pb.sample(sim.oracle)
        end = clock.now_micros() + 8 * HOUR
        bg_done = False
        for pid in ids:
            if clock.now_micros() > end:
                break
            yield rng.uniform(4, 14) * 60
            if actor.session_stale(
                sim.idle_seconds("clinician"), sim.absolute_seconds("clinician")
            ):
                actor.login()
            pb.begin(sim.oracle)  # once: the first read starts the scrape
            reply = actor.call("GET", f"/fhir/Patient/{pid}")
            if reply.status == 403 and not reply.step_up and not bg_done and rng.random() < 0.3:
                bg_done = True
                actor.step_up()
                body = {"patient": f"Patient/{pid}", "reason": "Avis demandé par un confrère"}
                reply = actor.call("POST", "/access/break-glass", body=body)
                if reply.ok:
                    reply = actor.call("GET", f"/fhir/Patient/{pid}")
            if cut.after(reply):
                pb.sample(sim.oracle)
                yield from cut.confirm()
                return
        actor.logout()
    pb.sample(sim.oracle)


def secretary_scrape(sim: Sim, pb: Playbook, establishment: str) -> Steps:
    def canary(a: Actor) -> Reply:
        params = {"service-provider": establishment, "_count": "1"}
        return a.call("GET", "/fhir/Encounter", params=params, canary=True)

    cut = yield from _take_session(sim, pb, canary)
    if cut is None:
        return
    rng = cut.actor.rng
    actor = cut.actor
    people = [p for p in sim.world.patients if p.family and p.birth_date]
    rng.shuffle(people)
    queries: list[dict[str, str]] = [{"family": p.family[:3]} for p in people[:30]]
    queries += [{"_count": "200", "_offset": str(o)} for o in range(0, 600, 200)]
    queries += [{"family:exact": p.family, "birthdate": p.birth_date} for p in people[:300]]
    queries += [{"identifier": f"{NIR_SYSTEM}|{_guess_nir(rng)}"} for _ in range(100)]
    for params in queries:
        if cut.after(actor.call("GET", "/fhir/Patient", params=params)):
            break
        yield rng.uniform(0.3, 1.5)
    yield from _wind_up(sim, pb, cut)


def patient_probe(sim: Sim, pb: Playbook) -> Steps:
    cut = yield from _take_session(sim, pb, own_record_canary)
    if cut is None:
        return
    actor = cut.actor
    rng = actor.rng
    own_record_canary(actor)
    known = _ids(sim, actor)[:75]
    guessed = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in known]
    for pid in [x for pair in zip(known, guessed, strict=True) for x in pair]:
        for path, params in (
            (f"/fhir/Patient/{pid}", None),
            ("/fhir/Observation", {"patient": pid}),
        ):
            if cut.after(actor.call("GET", path, params=params)):
                yield from cut.confirm()
                return
            yield rng.uniform(0.3, 1.5)
    for letters in ("ma", "du", "le", "be"):
        if cut.after(actor.call("GET", "/fhir/Patient", params={"family": letters})):
            break
        yield rng.uniform(0.3, 1.5)
    yield from cut.confirm()


def _guess_nir(r: random.Random) -> str:
    """A well-formed NIR (sex, year, month, department, commune, order, key) nobody may hold."""
    body = (
        f"{r.choice('12')}{r.randrange(100):02d}{r.randrange(1, 13):02d}"
        f"{r.randrange(1, 96):02d}{r.randrange(1, 990):03d}{r.randrange(1, 999):03d}"
    )
    return body + f"{97 - int(body) % 97:02d}"


__all__ = [
    "break_glass_scrape",
    "fast_scrape",
    "patient_probe",
    "search_scrape",
    "secretary_scrape",
    "slow_scrape",
]
