"""Long runs of normal traffic (`rempart simulate --clinicians N`): a hospital's medical rota.

The default run has one doctor per unit, at work every day. A real unit has several doctors,
and its nights and weekends are covered differently, which is what a guard must not mistake
for an attack. Here each unit's doctors come from the seeded directory (the unit's
Practitioners; the operator creates their accounts as `rempart seed` creates the first one's),
and the units of an establishment are paired for cover:

- weekdays: every doctor of the unit on a day shift (7:30-17:30), each seeing their share of
  the unit's worklist, unless on leave (LEAVE_SHARE of weekdays) or resting after a night;
- nights (20:00-08:00): one doctor on call for both units of the pair, in turn;
- weekends: one doctor per pair covers both units by day (two worklists), in turn;
- admissions: always the establishment's front desk (the admissions office is open every day
  and night, `normal.front_desk`), never a doctor: the policy lets only a front desk bring a
  patient into a unit's scope by admitting them;
- stays last a planned length (mean `normal.LENGTH_OF_STAY_DAYS`), discharges come first on
  the rounds (half of those due wait at weekends); now and then a patient is transferred to
  the other unit of the pair, whose doctors see them next; treating physicians look up their
  recent patients; the occasional justified break-the-glass.

Every doctor of a pair is a member of both of its units: the cover arrangement an
administrator sets up with `add-unit-membership` requests (here the operator's seed step).
"""

from __future__ import annotations

import dataclasses
import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from rempart import clock
from rempart.access import membership
from rempart.access.roles import Role
from rempart.identity.service import IdentityService
from rempart.seed.patients import ascii_slug
from rempart.simulate import normal
from rempart.simulate.engine import DAY, HOUR, Sim, Steps, iso, until
from rempart.simulate.world import Credentials, Unit, World

LEAVE_SHARE = 0.08  # weekdays off: holidays, training, compensatory rest
TRANSFER_PER_CONSULT = 0.02
DAY_PATIENTS = 14  # patients one doctor sees on a day shift
COVER_PATIENTS = 8  # per unit, covering at a weekend
NIGHT_PATIENTS = 3  # per unit, on call at night
ROUND_DELAY_DAYS = 0.8  # from "may leave" to the discharge on a day round


@dataclass(frozen=True)
class Shift:
    start: int  # simulated micros
    night: bool
    units: tuple[Unit, ...]  # worklists this shift works
    # Per unit: (my index, doctors of the unit on this shift), my part of its worklist.
    shares: tuple[tuple[int, int], ...]

    @property
    def end(self) -> int:
        return self.start + (12 if self.night else 10) * HOUR


def pairs(units: list[Unit]) -> list[tuple[Unit, ...]]:
    """Units paired for cover, in directory order within each establishment (an odd one out
    covers itself)."""
    out: list[tuple[Unit, ...]] = []
    for site in sorted({u.establishment for u in units}):
        mine = [u for u in units if u.establishment == site]
        out += [tuple(mine[i : i + 2]) for i in range(0, len(mine), 2)]
    return out


def provision(
    identity: IdentityService,
    engine: Engine,
    world: World,
    seeded: list[Credentials],
    total: int,
    account_id: Callable[[str], str],
) -> list[Credentials]:
    """The normal clinicians of the run: the seed's (`seeded`), then further doctors of the
    directory, unit after unit, until there are `total`; every one a member of both units of
    their pair. Raises ValueError if the directory has fewer doctors."""
    have = {c.practitioner for c in world.accounts if c.practitioner}
    spare = [[d for d in world.doctors.get(u.org, ()) if d[0] not in have] for u in world.units]
    doctors = list(seeded)
    created: list[Credentials] = []
    while len(doctors) < total:
        before = len(doctors)
        for unit, queue in zip(world.units, spare, strict=True):
            if queue and len(doctors) < total:
                practitioner, given, family = queue.pop(0)
                creds = Credentials.fresh(
                    f"dr.{ascii_slug(given)[:1]}.{ascii_slug(family)}.{len(doctors)}",
                    "clinician",
                    unit.org,
                    practitioner,
                )
                doctors.append(creds)
                created.append(creds)
        if len(doctors) == before:
            raise ValueError(
                f"the directory has {len(doctors)} doctors for normal traffic, not {total}: "
                "seed more patients (one doctor per 150) or ask for fewer clinicians"
            )
    for c in created:
        identity.create_account(
            username=c.username,
            password=c.password,
            role=Role.CLINICIAN,
            totp_secret=c.totp_secret,
            display_name=f"Dr {c.username}",
            practitioner=c.practitioner,
        )
    sister = {u.org: pair for pair in pairs(world.units) for u in pair}
    with engine.begin() as conn:
        for c in doctors:
            home = c.units[0]
            for unit in sister.get(home, ()):
                membership.add(conn, account_id(c.username), unit.org, None)
    return [
        dataclasses.replace(c, units=tuple(u.org for u in sister.get(c.units[0], ())))
        for c in doctors
    ]


def plan(sim: Sim, doctors: list[Credentials], days: int, seed: int) -> dict[str, list[Shift]]:
    """Every doctor's shifts, by username: the rota for `days` days."""
    rng = random.Random(f"{seed}/rota")  # noqa: S311 - traffic, not secrets
    home: dict[str, list[Credentials]] = {}
    for c in doctors:
        home.setdefault(c.units[0], []).append(c)
    shifts: dict[str, list[Shift]] = {c.username: [] for c in doctors}
    rested: set[str] = set()  # on call last night: off today
    for day in range(days):
        tonight: set[str] = set()
        for n, pair in enumerate(pairs(sim.world.units)):
            crew = [c for u in pair for c in home.get(u.org, [])]
            if not crew:
                continue
            turn = day + n  # pairs take their turns out of step
            awake = [c for c in crew if c.username not in rested] or crew
            if sim.weekend(day):
                on = awake[turn % len(awake)]
                start = sim.at(day, 8.0 + rng.uniform(0, 0.7))
                whole = tuple((0, 1) for _ in pair)
                shifts[on.username].append(Shift(start, False, pair, whole))
            else:
                for who, (units, shares) in _weekday(pair, home, rested, rng):
                    start = sim.at(day, 7.5 + rng.uniform(0, 0.7))
                    shifts[who].append(Shift(start, False, tuple(units), tuple(shares)))
            night = crew[(turn * 7 + 3) % len(crew)]
            start = sim.at(day, 20.0 + rng.uniform(0, 0.5))
            whole = tuple((0, 1) for _ in pair)
            shifts[night.username].append(Shift(start, True, pair, whole))
            tonight.add(night.username)
        rested = tonight
    return shifts


Duty = tuple[list[Unit], list[tuple[int, int]]]  # units, shares


def _weekday(
    pair: tuple[Unit, ...],
    home: dict[str, list[Credentials]],
    rested: set[str],
    rng: random.Random,
) -> list[tuple[str, Duty]]:
    """A weekday's day shifts for a pair: each unit's doctors present share its worklist; a
    unit whose doctors are all away (leave, rest after a night) is covered by a doctor of the
    other unit, who then works both lists."""
    duty: dict[str, Duty] = {}
    uncovered: list[Unit] = []
    for unit in pair:
        team = [c for c in home.get(unit.org, []) if c.username not in rested]
        present = [c for c in team if rng.random() >= LEAVE_SHARE] or team[:1]
        if not present:
            uncovered.append(unit)
        for i, c in enumerate(present):
            duty[c.username] = ([unit], [(i, len(present))])
    for unit in uncovered:
        crew = [c for u in pair for c in home.get(u.org, [])]
        helper = next(iter(duty), None) or crew[0].username
        units, shares = duty.setdefault(helper, ([], []))
        units.append(unit)
        shares.append((0, 1))
    return list(duty.items())


def doctor(sim: Sim, worker: normal.Worker, shifts: list[Shift]) -> Steps:
    for shift in sorted(shifts, key=lambda s: s.start):
        yield until(shift.start)
        worker.days += 1
        yield from _shift(sim, worker, shift)
        worker.actor.logout()


def _shift(sim: Sim, worker: normal.Worker, shift: Shift) -> Steps:
    rng = worker.actor.rng
    me = worker.actor.creds.practitioner
    weekend = sim.weekend(int((shift.start - sim.day0) // DAY))
    quota = NIGHT_PATIENTS if shift.night else COVER_PATIENTS if weekend else DAY_PATIENTS
    rounds: list[tuple[Unit, dict[str, Any]]] = []
    for unit, (mine, of) in zip(shift.units, shift.shares, strict=True):
        worklist = normal.entries(
            worker.call(
                sim,
                "GET",
                "/fhir/Encounter",
                params={"service-provider": unit.org, "status": "in-progress", "_count": "50"},
            )
        )
        # Beds are shared out by a key of each stay, not by position in the list: colleagues
        # fetch the list at different times (the desk admits in between), and positions would
        # overlap, so one would open a patient the other had just discharged: a refusal that is
        # the traffic's fault, not the doctor's (docs/benchmarks.md, "Normal traffic at scale").
        part = [e for e in worklist if zlib.crc32(str(e.get("id")).encode()) % of == mine]
        rng.shuffle(part)
        part.sort(key=lambda e: not _due(sim, e, rng))  # discharges first on the round
        rounds += [(unit, e) for e in part[:quota]]
        yield rng.uniform(1, 5) * 60
    for unit, encounter in rounds:
        if clock.now_micros() > shift.end:
            break
        yield rng.uniform(3, 12) * (3 if shift.night else 1) * 60
        if not (yield from normal.review(sim, worker, encounter, shift.night)):
            continue
        if shift.night:
            continue
        if _due(sim, encounter, rng) and (not weekend or rng.random() < 0.5):
            yield rng.uniform(60, 300)
            normal.discharge(sim, worker, encounter)
        elif rng.random() < TRANSFER_PER_CONSULT:
            yield rng.uniform(60, 300)
            _transfer(sim, worker, unit, encounter)
    if not shift.night and me:
        yield rng.uniform(5, 20) * 60
        recent = normal.entries(
            worker.call(sim, "GET", "/fhir/Encounter", params={"participant": me, "_count": "20"})
        )
        for encounter in recent[: rng.randrange(3)]:
            yield rng.uniform(60, 300)
            subject = encounter.get("subject", {}).get("reference", "")
            worker.call(sim, "GET", f"/fhir/{subject}")
    if rng.random() < normal.BREAK_GLASS_PER_CLINICIAN_DAY:
        yield rng.uniform(10, 60) * 60
        yield from normal.break_glass(sim, worker)


def plan_stay(sim: Sim, rng: random.Random, patient: str) -> None:
    """When `patient` (first seen on a round; the desk admitted them) may leave: half a day at
    least after their admission. A patient leaves on the first day round after that (about 0.8
    day later on average, weekends included), so the stays last `normal.LENGTH_OF_STAY_DAYS` on
    average and each unit's census stays near `Sim.census` (measured: 28-33 a unit at a census
    of 30)."""
    days = 0.5 + rng.expovariate(1 / (normal.LENGTH_OF_STAY_DAYS - ROUND_DELAY_DAYS - 0.5))
    sim.leaving[patient] = sim.admitted.get(patient, clock.now_micros()) + int(days * DAY)


def _due(sim: Sim, encounter: dict[str, Any], rng: random.Random) -> bool:
    patient = str(encounter.get("subject", {}).get("reference", "")).removeprefix("Patient/")
    if patient not in sim.leaving:
        plan_stay(sim, rng, patient)
    return sim.leaving[patient] <= clock.now_micros()


def _transfer(sim: Sim, worker: normal.Worker, unit: Unit, encounter: dict[str, Any]) -> None:
    """The patient moves to the other unit of the pair (a bed there, a specialty's care)."""
    mine = worker.actor.creds.units
    other = next((u for u in sim.world.units if u.org in mine and u.org != unit.org), None)
    if other is None:
        return
    moved = {
        **encounter,
        "serviceProvider": {"reference": other.org},
        "location": [
            {"location": {"reference": unit.location}, "status": "completed"},
            {"location": {"reference": other.location}, "status": "active"},
        ],
    }
    moved.setdefault("period", {"start": iso(clock.now_micros() - HOUR)})
    worker.call(sim, "PUT", f"/fhir/Encounter/{encounter['id']}", body=moved)
