"""`rempart simulate`: seed, serve, play a few hospital days with attacks among them, score.

The cast comes from the seed's accounts: every attack is played by its own account (so an
attacker's alerts and containment are its own), normal traffic by all the others. The attacks
happen on the second simulated day (the first when only one is played), among the ward rounds;
the slow-and-low attacker works office hours from the first day for at least three days.

Long runs that measure false alarms (`--normal-only`, usually with `--clinicians N`) play no
attacker: every seeded account works normally, and with `--clinicians` the units are staffed
by a rota of several doctors each (rota.py) instead of one doctor at work every day.

Admissions are the front desks' only (the policy refuses a clinician's: `access/scope.py`),
every day and night (`normal.front_desk`). The seed gives a front desk account to some
establishments only, and an attack run casts one of them as an attacker: for every
establishment left without a normal front desk, the runner provisions one first, as an
operator would (`provision_desks`: a secretary account, a member of the establishment, its
secrets to its holder), the way rota.py provisions the rota's doctors.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from rempart import clock
from rempart.access import membership
from rempart.access.roles import Role
from rempart.simulate import attacks_admin as admin
from rempart.simulate import attacks_staff as staff
from rempart.simulate import normal, rota
from rempart.simulate.actor import Actor
from rempart.simulate.engine import DAY, Scheduler, Sim, Steps, next_midnight
from rempart.simulate.leaks import PatientIndex
from rempart.simulate.officer import SeenAlert, about, read_alerts
from rempart.simulate.oracle import Legitimate, ScopeOracle
from rempart.simulate.playbook import Playbook
from rempart.simulate.report import PlaybookResult, Report
from rempart.simulate.server import LiveHospital, live_hospital
from rempart.simulate.world import Credentials, Unit, World, build_world

SLOW_DAYS = 3


@dataclass
class Hooks:
    """Progress callbacks for the CLI (Rich bars); all optional."""

    seeded: Callable[[int], None] | None = None
    simulated: Callable[[float], None] | None = None  # fraction of simulated time done
    # Sees the cast once the play is over (tests and debugging: every actor's exchanges).
    inspect: Callable[[list[normal.Worker], list[Playbook]], None] | None = None


def simulate(
    patients: int,
    seed: int,
    days: int,
    hooks: Hooks | None = None,
    *,
    clinicians: int | None = None,
    attacks: bool = True,
    keys: bool = True,
) -> Report:
    """`clinicians`: that many normal clinician accounts working a rota (rota.py) instead of
    the seed's one doctor per unit at work every day; `attacks=False`: normal traffic only,
    every account of the seed working normally (the long runs that measure false alarms);
    `keys`: every clinician account gets a security key before the play (`issue_keys`)."""
    hooks = hooks or Hooks()
    started = time.monotonic()
    # The clock is restored only once the server has stopped (it must never see time go back).
    with (
        clock.SimulatedTime() as simulated,
        live_hospital(patients, seed, hooks.seeded, floor_hashing=not attacks) as live,
    ):
        world = build_world(patients, seed, live.credentials)
        index = PatientIndex(world)
        oracle = ScopeOracle(live.services.engine)
        simulated.advance_to(next_midnight(clock.now_micros()))
        sim = Sim(
            world,
            index,
            oracle,
            live.url,
            simulated,
            random.Random(seed),  # noqa: S311 - traffic, not secrets
            live.settings.identity.sessions,
            day0=clock.now_micros() // DAY * DAY,
            census=normal.census_per_unit(patients),
            seed=seed,
        )
        try:
            workers, playbooks, kinds = _cast(sim, attacks)
            workers += provision_desks(sim, live, workers)
            normal.fill_wards(sim, live.services.store, _attendings(world))
            shifts: dict[str, list[rota.Shift]] | None = None
            if clinicians is not None:
                workers, shifts = _staff(sim, live, workers, clinicians, days)
            if keys:
                cast = [w.actor for w in workers] + [p.actor for p in playbooks if p.actor]
                issue_keys(sim, cast)
            _play(sim, days, workers, playbooks, hooks, shifts)
            officer = sim.actor("officer", world.by_role("security_officer")[0], "127.0.12.1")
            alerts, source = read_alerts(officer, live.services.engine)
        finally:
            sim.close()
        if attacks:
            database = Playbook(
                "stolen-database-file", "copy of the SQLite file and WAL, no key", None, None, False
            )
            admin.steal_database(live.home, index, database)
            playbooks.append(database)
            kinds[database.name] = "database"
        if hooks.inspect is not None:
            hooks.inspect(workers, playbooks)
        # An alert about a normal account is false unless it also names an attacker (an
        # attacker's request to reset a clinician's factor names both: it is the attack's).
        attackers = [
            (oracle.account_id(p.actor.creds.username), p.actor.creds.username)
            for p in playbooks
            if p.actor is not None
        ]
        innocent = [a for a in alerts if not any(about(a, i, u) for i, u in attackers)]
        false_kinds: Counter[str] = Counter()
        causes: Counter[str] = Counter()  # each false containment, with the guard's signals
        for w in workers:
            account_id = oracle.account_id(w.actor.creds.username)
            mine = [a.kind for a in innocent if about(a, account_id, w.actor.creds.username)]
            false_kinds.update(mine)
            signals = ", ".join(sorted({k for k in mine if k.startswith("guard-")})) or "none"
            causes.update(
                f"{cause} (guard alerts on the account: {signals})" for _, cause in w.containments
            )
        doctors = [w for w in workers if w.actor.creds.role == "clinician"]
        return Report(
            patients=patients,
            playbooks=[_result(p, kinds[p.name], alerts, oracle) for p in playbooks],
            clinician_days=sum(w.days for w in doctors),
            false_containments=sum(len(w.containments) for w in workers),
            false_alerts=sum(false_kinds.values()),
            false_alert_kinds=false_kinds,
            false_containment_incidents=sum(w.incidents for w in workers),
            false_containment_causes=causes,
            step_ups_demanded=sum(w.step_ups_demanded for w in workers),
            normal_requests=sum(w.actor.requests for w in workers),
            wall_seconds=time.monotonic() - started,
            seed_seconds=live.seed_seconds,
            alert_source=source,
        )


def _play(
    sim: Sim,
    days: int,
    workers: list[normal.Worker],
    playbooks: list[Playbook],
    hooks: Hooks,
    shifts: dict[str, list[rota.Shift]] | None,
) -> None:
    scheduler = Scheduler(sim.time)
    for start, steps in _schedule(sim, days, workers, playbooks, shifts):
        scheduler.add(start, steps)
    horizon = (max(days, SLOW_DAYS) if playbooks else days) * DAY

    def tick(now: int) -> None:
        if hooks.simulated is not None:
            hooks.simulated(min(1.0, (now - sim.day0) / horizon))

    scheduler.run(tick)


def _result(p: Playbook, kind: str, alerts: list[SeenAlert], oracle: ScopeOracle) -> PlaybookResult:
    mine: list[SeenAlert] = []
    if p.actor is not None:
        account_id = oracle.account_id(p.actor.creds.username)
        mine = [a for a in alerts if about(a, account_id, p.actor.creds.username)]
    seconds = p.seconds_to_containment()
    return PlaybookResult(
        name=p.name,
        attacker=p.attacker,
        kind=kind,
        records_leaked=len(p.leaked()),
        requests=p.requests,
        contained=seconds is not None,
        seconds_to_containment=seconds,
        alerts=len(mine),
        scrape=p.scrape,
        alert_kinds=tuple(a.kind for a in mine),
        notes=tuple(p.notes),
    )


def _attendings(world: World) -> list[tuple[Unit, str | None]]:
    """Each unit with the practitioner of its doctor's account (the attending of its stays)."""
    out: list[tuple[Unit, str | None]] = []
    for unit in world.units:
        doctor = next((a for a in world.by_role("clinician") if unit.org in a.units), None)
        out.append((unit, doctor.practitioner if doctor else None))
    return out


def _staff(
    sim: Sim, live: LiveHospital, workers: list[normal.Worker], total: int, days: int
) -> tuple[list[normal.Worker], dict[str, list[rota.Shift]]]:
    """The clinicians replaced by `total` doctors working the rota (accounts created for the
    directory's other doctors), with their shifts."""
    seeded = [w.actor.creds for w in workers if w.actor.creds.role == "clinician"]
    doctors = rota.provision(
        live.services.identity,
        live.services.engine,
        sim.world,
        seeded,
        total,
        sim.oracle.account_id,
    )
    others = [w for w in workers if w.actor.creds.role != "clinician"]
    staff = [normal.Worker(sim.actor(c.username, c, _lan(i))) for i, c in enumerate(doctors)]
    return staff + others, rota.plan(sim, doctors, days, sim.seed)


def issue_keys(sim: Sim, actors: list[Actor]) -> None:
    """A security key for every clinician account, registered over HTTP by its holder at the
    IT desk before the play (as a hospital hands out badges). The actor carries it; an
    attacker's actor holds it only while the victim does (`holds_key`)."""
    for actor in actors:
        if actor.creds.role != "clinician":
            continue
        desk = sim.actor(f"{actor.name} (IT desk)", actor.creds, "127.0.9.1")
        key = desk.enrol_key()
        if key is None:
            raise RuntimeError(f"could not register a security key for {actor.creds.username}")
        actor.key = key
        actor.holds_totp_step(desk)


def _lan(i: int) -> str:
    """The hospital LAN's address of normal clinician `i` (250 to a /24)."""
    return f"127.0.{10 * (1 + i // 250)}.{i % 250 + 1}"


def _desk_units(world: World, creds: Credentials) -> list[Unit]:
    """The units whose admissions a front desk account makes (its establishment's)."""
    if creds.role != "secretary" or not creds.units or creds.units[0] not in world.establishments:
        return []
    site = world.establishments.index(creds.units[0])
    return [u for u in world.units if u.establishment == site]


def provision_desks(
    sim: Sim, live: LiveHospital, workers: list[normal.Worker]
) -> list[normal.Worker]:
    """A front desk account for each establishment no normal worker's desk serves (created
    with its secrets, a member of the establishment, as the operator's provisioning step), so
    that every unit's admissions are a desk's and no doctor ever admits."""
    world = sim.world
    served = {u.establishment for w in workers for u in _desk_units(world, w.actor.creds)}
    created: list[normal.Worker] = []
    for site, org in enumerate(world.establishments):
        if site in served or not any(u.establishment == site for u in world.units):
            continue
        creds = Credentials.fresh(f"bureau.entrees.{site}", "secretary", org)
        account_id = live.services.identity.create_account(
            username=creds.username,
            password=creds.password,
            role=Role.SECRETARY,
            totp_secret=creds.totp_secret,
            display_name=f"Bureau des entrées {site}",
        )
        with live.services.engine.begin() as conn:
            membership.add(conn, account_id, org, None)
        actor = sim.actor(creds.username, creds, f"127.0.11.{100 + site}")
        created.append(normal.Worker(actor))
    return created


def _cast(sim: Sim, attacks: bool) -> tuple[list[normal.Worker], list[Playbook], dict[str, str]]:
    world = sim.world
    clinicians = world.by_role("clinician")
    secretaries = world.by_role("secretary")
    patients = world.by_role("patient")
    admins = world.by_role("admin")
    if not attacks:  # everyone works normally
        workers = [
            normal.Worker(sim.actor(c.username, c, _lan(i))) for i, c in enumerate(clinicians)
        ]
        workers += [
            normal.Worker(sim.actor(c.username, c, f"127.0.11.{i + 1}"))
            for i, c in enumerate(secretaries)
        ]
        workers += [
            normal.Worker(sim.actor(p.username, p, f"127.20.{i}.1")) for i, p in enumerate(patients)
        ]
        return workers, [], {}
    if len(clinicians) < 6 or len(secretaries) < 2 or len(patients) < 2 or len(admins) < 2:
        raise ValueError("the hospital is too small to cast every attacker apart from normal staff")
    attackers = clinicians[-4:]
    n = 0

    def attacker(
        name: str, who: Credentials, what: str, scrape: bool, legit: bool = True
    ) -> Playbook:
        nonlocal n
        n += 1
        actor = sim.actor(name, who, f"127.66.{n}.1")
        return Playbook(
            name,
            f"{who.role} {who.username} ({what})",
            actor,
            Legitimate(who.username) if legit else None,
            scrape,
        )

    playbooks = [
        attacker("admin-stolen-password", admins[0], "password only", False, legit=False),
        attacker("admin-live-session", admins[1], "live session", False, legit=False),
        attacker("clinician-fast-scrape", attackers[0], "live session", True),
        attacker("clinician-slow-and-low", attackers[1], "password and TOTP secret", True),
        attacker("clinician-search-scrape", attackers[2], "live session", True),
        attacker("clinician-break-glass-scrape", attackers[3], "live session", True),
        attacker("secretary-demographics-scrape", secretaries[1], "live session", True),
        attacker("patient-probing-ids", patients[-1], "live session", True),
    ]
    kinds = {p.name: p.actor.creds.role if p.actor else "database" for p in playbooks}
    kinds = {k: ("admin" if v == "admin" else v) for k, v in kinds.items()}
    workers = [
        normal.Worker(sim.actor(c.username, c, f"127.0.10.{i + 1}"))
        for i, c in enumerate(clinicians[:-4])
    ]
    workers.append(normal.Worker(sim.actor(secretaries[0].username, secretaries[0], "127.0.11.1")))
    workers += [
        normal.Worker(sim.actor(p.username, p, f"127.20.{i}.1"))
        for i, p in enumerate(patients[:-1])
    ]
    return workers, playbooks, kinds


def _schedule(
    sim: Sim,
    days: int,
    workers: list[normal.Worker],
    playbooks: list[Playbook],
    shifts: dict[str, list[rota.Shift]] | None = None,
) -> list[tuple[int, Steps]]:
    world: World = sim.world
    plan: list[tuple[int, Steps]] = []
    for w in workers:
        role = w.actor.creds.role
        if role == "clinician" and shifts is not None:
            plan.append((sim.day0, rota.doctor(sim, w, shifts.get(w.actor.creds.username, []))))
        elif role == "clinician":
            unit = world.unit_of(w.actor.creds)
            if unit is None:
                continue
            plan.append((sim.day0, normal.clinician(sim, w, unit, days)))
        elif role == "secretary":
            units = _desk_units(world, w.actor.creds)
            plan.append((sim.day0, normal.front_desk(sim, w, units, days)))
        else:
            plan.append((sim.day0, normal.patient_at_home(sim, w, days)))
    if not playbooks:
        return plan
    day = min(1, days - 1)
    by_name = {p.name: p for p in playbooks}

    def unit_of(p: Playbook) -> object:
        assert p.actor is not None
        unit = world.unit_of(p.actor.creds)
        assert unit is not None
        return unit

    fast, slow = by_name["clinician-fast-scrape"], by_name["clinician-slow-and-low"]
    search, glass = by_name["clinician-search-scrape"], by_name["clinician-break-glass-scrape"]
    secretary = by_name["secretary-demographics-scrape"]
    site = secretary.actor.creds.units[0] if secretary.actor and secretary.actor.creds.units else ""
    plan += [
        (sim.at(day, 3.2), admin.stolen_password(sim, by_name["admin-stolen-password"])),
        (sim.at(day, 9.7), admin.admin_live_session(sim, by_name["admin-live-session"])),
        (sim.at(day, 10.3), staff.fast_scrape(sim, fast, unit_of(fast))),  # type: ignore[arg-type]
        (sim.at(0, 8.0), staff.slow_scrape(sim, slow, unit_of(slow), max(days, SLOW_DAYS))),  # type: ignore[arg-type]
        (sim.at(day, 11.1), staff.search_scrape(sim, search, unit_of(search))),  # type: ignore[arg-type]
        (sim.at(day, 14.6), staff.break_glass_scrape(sim, glass, unit_of(glass))),  # type: ignore[arg-type]
        (sim.at(day, 15.5), staff.secretary_scrape(sim, secretary, site)),
        (sim.at(day, 21.2), staff.patient_probe(sim, by_name["patient-probing-ids"])),
    ]
    return plan
