"""Normal hospital life: clinicians on their wards, a front desk admitting, patients at home.

Volumes follow the seeded hospital: each unit starts with a census of patients staying in it
(`census_per_unit`, growing with the hospital), admits census / length-of-stay patients a day
(always by its establishment's front desk, the admissions office, open every day and night:
doctors never admit, the policy refuses them), a doctor sees the patients staying in the unit
(a worklist search, then each record: demographics, observations, sometimes problems,
treatments, allergies, documents), writes vital signs and notes, discharges after a few
days, follows up recent patients, and now and then opens a patient outside their
relationships through break-the-glass with a real reason. Some doctors work nights on some
days. Patients read their own record a few times a week.

Every refusal a normal user meets is classified: a fresh-factor demand they pass is friction
(counted apart); a session refused, a 429 or a lock is a *false containment*.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

from rempart import clock
from rempart.ingest.files import Item
from rempart.ingest.importer import import_items
from rempart.simulate.actor import Actor, Reply
from rempart.simulate.bodies import admission, progress_note, vital_sign
from rempart.simulate.engine import DAY, HOUR, MINUTE, Sim, Steps, iso, until
from rempart.simulate.world import NIR_SYSTEM, Unit
from rempart.store.repository import ResourceStore

LENGTH_OF_STAY_DAYS = 4.0  # French acute care averages 5.5 days; short stays pull it down
BREAK_GLASS_PER_CLINICIAN_DAY = 0.05
PATIENT_VISITS_PER_DAY = 0.3
NIGHT_SHARE = 0.2
NIGHT_ADMISSIONS = 0.25  # share of a unit's admissions arriving in the evening and at night
REASONS = (
    "Transfert depuis les urgences d'un patient inconscient: allergies et traitements à vérifier",
    "Avis cardiologique demandé en urgence par l'équipe de garde, patient hors service",
    "Patient admis en réanimation cette nuit, dossier antérieur nécessaire pour la prescription",
)


@dataclass
class Worker:
    """A normal user and what the server did to them."""

    actor: Actor
    containments: list[tuple[int, str]] = field(default_factory=list)  # every refusal
    # Episodes: refusals from one cut until the server serves this person again count once
    # (a locked account is refused at every sign-in until a security officer unlocks it).
    incidents: int = 0
    step_ups_demanded: int = 0
    days: int = 0
    _cut: bool = False

    def contained(self, cause: str) -> None:
        self.containments.append((clock.now_micros(), cause))
        self.incidents += not self._cut
        self._cut = True

    def ensure_session(self, sim: Sim) -> bool:
        role = self.actor.creds.role
        stale = self.actor.session_stale(sim.idle_seconds(role), sim.absolute_seconds(role))
        if stale and not self.actor.login():
            self.contained("sign-in refused")
            return False
        return True

    def call(self, sim: Sim, method: str, path: str, **kwargs: Any) -> Reply | None:
        """One request of a legitimate user; None when the server cut them off."""
        if not self.ensure_session(sim):
            return None
        reply = self.actor.call(method, path, **kwargs)
        if reply.ok or reply.status not in (401, 403, 423, 429):
            self._cut = self._cut and not reply.ok
            return reply
        if reply.status == 403 and not reply.step_up:
            return reply  # the policy's answer for this record, not a cut: the caller decides
        if reply.step_up:
            self.step_ups_demanded += 1
            recovered = self.actor.step_up()
            cause = "fresh factor refused"
        else:
            recovered = reply.status == 401 and self.actor.login()
            cause = f"HTTP {reply.status}"
        if not reply.step_up or not recovered:
            # A session refused, a 429, a lock: the server stopped serving a normal user.
            self.contained(cause)
        if not recovered:
            return None
        again = self.actor.call(method, path, **kwargs)
        self._cut = self._cut and not again.ok
        return again


def entries(reply: Reply | None) -> list[dict[str, Any]]:
    if reply is None or not reply.ok or not isinstance(reply.doc, dict):
        return []
    return [e["resource"] for e in reply.doc.get("entry", []) if "resource" in e]


def admit(sim: Sim, worker: Worker, unit: Unit) -> Steps:
    """An admission at the front desk: the patient is found by their NIR (exact identity, as
    the policy allows a desk), then the stay is recorded, which brings them into the unit's
    scope (and the desk's)."""
    patient = sim.world.admissible(worker.actor.rng)
    if patient.id in sim.admitted:
        return
    found = worker.call(
        sim, "GET", "/fhir/Patient", params={"identifier": f"{NIR_SYSTEM}|{patient.nir}"}
    )
    if not entries(found):
        return
    yield worker.actor.rng.uniform(30, 120)
    created = worker.call(sim, "POST", "/fhir/Encounter", body=admission(patient, unit, None))
    if created is not None and created.ok:
        sim.admitted[patient.id] = clock.now_micros()
        yield worker.actor.rng.uniform(20, 90)
        worker.call(sim, "GET", "/fhir/Coverage", params={"patient": f"Patient/{patient.id}"})


def _consult(sim: Sim, worker: Worker, encounter: dict[str, Any], night: bool) -> Steps:
    rng = worker.actor.rng
    patient = encounter["subject"]["reference"].removeprefix("Patient/")
    if not (yield from review(sim, worker, encounter, night)):
        return
    admitted = sim.admitted.get(patient, 0)
    if not night and clock.now_micros() - admitted > 2 * DAY and rng.random() < 0.4:
        yield rng.uniform(60, 300)
        discharge(sim, worker, encounter)


def review(
    sim: Sim, worker: Worker, encounter: dict[str, Any], night: bool
) -> Generator[float, None, bool]:
    """A doctor at one bedside: the record read, vital signs written, sometimes a note. Returns
    False (as the generator's value) when the record could not be opened."""
    actor = worker.actor
    rng = worker.actor.rng
    patient = encounter["subject"]["reference"].removeprefix("Patient/")
    reply = worker.call(sim, "GET", f"/fhir/Patient/{patient}")
    if reply is None or not reply.ok:
        return False
    yield rng.uniform(20, 90)
    worker.call(sim, "GET", "/fhir/Observation", params={"patient": patient, "_count": "20"})
    for res_type in ("Condition", "MedicationRequest", "AllergyIntolerance", "DocumentReference"):
        if rng.random() < (0.3 if night else 0.5):
            yield rng.uniform(15, 60)
            worker.call(sim, "GET", f"/fhir/{res_type}", params={"patient": patient})
    if rng.random() < 0.6:
        yield rng.uniform(30, 120)
        worker.call(
            sim,
            "POST",
            "/fhir/Observation",
            body=vital_sign(patient, encounter["id"], 60 + rng.randrange(50)),
        )
    if not night and rng.random() < 0.3 and actor.creds.practitioner:
        yield rng.uniform(120, 400)
        note = progress_note(
            patient, encounter["id"], actor.creds.practitioner, "Examen clinique stable; poursuite."
        )
        worker.call(sim, "POST", "/fhir/DocumentReference", body=note)
    return True


def discharge(sim: Sim, worker: Worker, encounter: dict[str, Any]) -> bool:
    patient = encounter["subject"]["reference"].removeprefix("Patient/")
    finished = {**encounter, "status": "finished"}
    finished["period"] = {**encounter.get("period", {}), "end": iso(clock.now_micros())}
    if "start" not in finished["period"]:
        finished["period"]["start"] = iso(clock.now_micros() - HOUR)
    done = worker.call(sim, "PUT", f"/fhir/Encounter/{encounter['id']}", body=finished)
    if done is not None and done.ok:
        sim.admitted.pop(patient, None)
        sim.leaving.pop(patient, None)
        return True
    return False


def break_glass(sim: Sim, worker: Worker) -> Steps:
    """A justified emergency access: the doctor is refused, confirms it is them, gives the
    reason, then reads what the emergency needs."""
    patient = sim.world.admissible(worker.actor.rng)
    first = worker.call(sim, "GET", f"/fhir/Patient/{patient.id}")
    if first is None or first.ok:
        return
    yield worker.actor.rng.uniform(20, 60)
    if not worker.actor.step_up():
        worker.contained("fresh factor refused")
        return
    body = {"patient": f"Patient/{patient.id}", "reason": worker.actor.rng.choice(REASONS)}
    granted = worker.call(sim, "POST", "/access/break-glass", body=body)
    if granted is None or not granted.ok:
        return
    for res_type in ("Patient", "AllergyIntolerance", "MedicationRequest"):
        yield worker.actor.rng.uniform(30, 120)
        if res_type == "Patient":
            worker.call(sim, "GET", f"/fhir/Patient/{patient.id}")
        else:
            worker.call(sim, "GET", f"/fhir/{res_type}", params={"patient": patient.id})


def clinician(sim: Sim, worker: Worker, unit: Unit, days: int) -> Steps:
    rng = worker.actor.rng
    actor = worker.actor
    me = actor.creds.practitioner
    for day in range(days):
        night = rng.random() < NIGHT_SHARE
        start = sim.at(day, (20.0 if night else 7.5) + rng.uniform(0, 0.7))
        end = start + (12 if night else 10) * HOUR
        yield until(start)
        worker.days += 1
        worklist = entries(
            worker.call(
                sim,
                "GET",
                "/fhir/Encounter",
                params={"service-provider": unit.org, "status": "in-progress", "_count": "50"},
            )
        )
        rng.shuffle(worklist)
        for encounter in worklist[: 6 if night else 14]:
            if clock.now_micros() > end:
                break
            yield rng.uniform(3, 12) * (3 if night else 1) * 60
            yield from _consult(sim, worker, encounter, night)
        if not night and me:
            yield rng.uniform(5, 20) * 60
            recent = entries(
                worker.call(
                    sim, "GET", "/fhir/Encounter", params={"participant": me, "_count": "20"}
                )
            )
            for encounter in recent[: rng.randrange(3)]:
                yield rng.uniform(60, 300)
                subject = encounter.get("subject", {}).get("reference", "")
                worker.call(sim, "GET", f"/fhir/{subject}")
        if rng.random() < BREAK_GLASS_PER_CLINICIAN_DAY:
            yield rng.uniform(10, 60) * 60
            yield from break_glass(sim, worker)
        actor.logout()


def front_desk(sim: Sim, worker: Worker, units: list[Unit], days: int) -> Steps:
    """An establishment's admissions office ("bureau des entrées"): open every day, weekends
    included, and at night through the emergency department's desk, so every admission of its
    units is the desk's (a day session from 8:00; the evening's and night's arrivals from
    21:00). The day session also finds the day's appointments by exact identity."""
    rng = worker.actor.rng
    daily = sim.census / LENGTH_OF_STAY_DAYS
    for day in range(days):
        yield until(sim.at(day, 8.0 + rng.uniform(0, 0.5)))
        worker.days += 1
        yield from _admissions(sim, worker, units, daily * (1 - NIGHT_ADMISSIONS))
        for _ in range(rng.randrange(3, 9)):  # appointments: exact identity at the desk
            person = sim.world.admissible(rng)
            yield rng.uniform(2, 15) * 60
            worker.call(
                sim,
                "GET",
                "/fhir/Patient",
                params={"family:exact": person.family, "birthdate": person.birth_date},
            )
        worker.actor.logout()
        yield until(sim.at(day, 21.0 + rng.uniform(0, 0.5)))
        yield from _admissions(sim, worker, units, daily * NIGHT_ADMISSIONS)
        worker.actor.logout()


def _admissions(sim: Sim, worker: Worker, units: list[Unit], mean: float) -> Steps:
    """Admissions for `units`, `mean` a unit, in the order the patients arrive."""
    rng = worker.actor.rng
    jobs = [u for u in units for _ in range(poisson(rng, mean))]
    rng.shuffle(jobs)
    for unit in jobs:
        yield from admit(sim, worker, unit)
        yield rng.uniform(5, 25) * 60


def patient_at_home(sim: Sim, worker: Worker, days: int) -> Steps:
    rng = worker.actor.rng
    own = (worker.actor.creds.patient or "").removeprefix("Patient/")
    for day in range(days):
        worker.days += 1
        if rng.random() > PATIENT_VISITS_PER_DAY:
            continue
        yield until(sim.at(day, rng.uniform(9, 22)))
        worker.call(sim, "GET", f"/fhir/Patient/{own}")
        for path, params in (
            ("/fhir/Observation", {"patient": own, "_count": "20"}),
            ("/fhir/DocumentReference", {"patient": own}),
            ("/me/access-history", None),
        ):
            yield rng.uniform(20, 120)
            worker.call(sim, "GET", path, params=params)
        worker.actor.logout()


def census_per_unit(patients: int) -> int:
    """Beds occupied per unit: about 1.2 beds per 1,000 people a hospital serves, over its
    units (a 750,000-patient hospital group: ~30 per unit), never under 3."""
    return max(3, min(30, round(patients / 250)))


def fill_wards(sim: Sim, store: ResourceStore, units: list[tuple[Unit, str | None]]) -> None:
    """The wards as they are when the simulation starts: patients admitted over the last days,
    loaded by the operator's import (`rempart import` of an admissions feed), not by traffic."""
    now = clock.now_micros()
    items: list[Item] = []
    for unit, practitioner in units:
        for _ in range(sim.census):
            patient = sim.world.admissible(sim.rng)
            if patient.id in sim.admitted:
                continue
            body = admission(patient, unit, practitioner)
            since = now - int(sim.rng.uniform(0, LENGTH_OF_STAY_DAYS) * DAY)
            body["period"] = {"start": iso(since)}
            items.append(Item(f"census:{unit.org}", body))
            sim.admitted[patient.id] = since
    summary = import_items(store, items)
    if summary.rejected:
        raise RuntimeError(f"the wards' census was refused: {summary.rejected[:3]}")


def poisson(rng: Any, mean: float) -> int:
    # Knuth's method: small means only.
    limit, k, product = 2.718281828459045 ** (-mean), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k


__all__ = ["MINUTE", "Worker", "clinician", "front_desk", "patient_at_home"]
