"""The rota of `rempart simulate --clinicians N`: who works which shift, on which worklists.

Pure planning (no server): a hand-made hospital of two establishments, five units, eleven
doctors, planned over two weeks from a Monday.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from datetime import UTC, datetime

import pytest

from rempart.simulate import rota
from rempart.simulate.engine import DAY, HOUR, SECOND, Sim
from rempart.simulate.world import Credentials, Unit, World

MONDAY = int(datetime(2026, 11, 30, tzinfo=UTC).timestamp()) * SECOND
UNITS = [
    Unit("Organization/a", "Location/a", "med", 0),
    Unit("Organization/b", "Location/b", "surg", 0),
    Unit("Organization/c", "Location/c", "ger", 0),
    Unit("Organization/d", "Location/d", "med", 1),
    Unit("Organization/e", "Location/e", "surg", 1),
]
STAFFING = {"a": 3, "b": 2, "c": 2, "d": 2, "e": 2}
DAYS = 14


def _doctors() -> list[Credentials]:
    return [
        Credentials(
            f"dr.{unit}.{n}",
            "pw",
            "SECRET",
            "clinician",
            f"Practitioner/{unit}{n}",
            None,
            (f"Organization/{unit}",),
        )
        for unit, count in STAFFING.items()
        for n in range(count)
    ]


def _sim() -> Sim:
    world = World(patients=[], accounts=[], units=UNITS, establishments=["Organization/x"])
    return Sim(world, None, None, "", None, random.Random(0), None, day0=MONDAY)  # type: ignore[arg-type]


def test_units_are_paired_within_their_establishment() -> None:
    assert [tuple(u.org[-1] for u in pair) for pair in rota.pairs(UNITS)] == [
        ("a", "b"),
        ("c",),
        ("d", "e"),
    ]


def test_the_rota_covers_every_unit_every_day_and_night() -> None:
    sim = _sim()
    shifts = rota.plan(sim, _doctors(), DAYS, seed=3)
    for day in range(DAYS):
        day_units: Counter[str] = Counter()
        night_units: Counter[str] = Counter()
        for mine in shifts.values():
            for s in mine:
                if (s.start - MONDAY) // DAY == day:
                    (night_units if s.night else day_units).update(u.org for u in s.units)
        assert set(day_units) == {u.org for u in UNITS}, day
        # One doctor on call per pair of units each night, both units on the one worklist.
        assert night_units == Counter({u.org: 1 for u in UNITS}), day
        if sim.weekend(day):
            assert set(day_units.values()) == {1}  # one doctor covers each pair by day


def test_weekends_nights_and_rest() -> None:
    sim = _sim()
    assert [sim.weekend(d) for d in range(7)] == [False] * 5 + [True, True]
    shifts = rota.plan(sim, _doctors(), DAYS, seed=3)
    for username, mine in shifts.items():
        starts = sorted(mine, key=lambda s: s.start)
        for before, after in itertools.pairwise(starts):
            # Nobody starts a shift before the previous one ended (no day shift after a night).
            assert after.start >= before.end, username
        for s in mine:
            hour = (s.start - MONDAY) % DAY / HOUR
            assert 20 <= hour < 21 if s.night else 7.5 <= hour < 9, (username, hour)
            assert len(s.shares) == len(s.units)
            for mine_index, of in s.shares:
                assert 0 <= mine_index < of
    worked = Counter(len(mine) for mine in shifts.values())
    assert min(worked) >= 1  # everyone is on the rota
    assert sum(len(m) for m in shifts.values()) > DAYS * len(UNITS)


def test_a_weekday_unit_shares_its_worklist_among_its_doctors() -> None:
    sim = _sim()
    shifts = rota.plan(sim, _doctors(), 1, seed=3)
    on_a = sorted(
        s.shares[0] for m in shifts.values() for s in m if not s.night and s.units == (UNITS[0],)
    )
    assert on_a, "unit a has day doctors"
    assert [i for i, _ in on_a] == list(range(len(on_a)))
    assert {of for _, of in on_a} == {len(on_a)}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_unit_whose_doctors_are_away_is_covered_by_its_sister(seed: int) -> None:
    """Unit c has one doctor: the nights it is on call, it rests the next day and nobody else
    is on its worklist; unit b's single doctor alone, likewise, hands over to unit a's."""
    doctors = [d for d in _doctors() if d.username not in {"dr.b.1", "dr.c.1"}]
    sim = _sim()
    shifts = rota.plan(sim, doctors, DAYS, seed=seed)
    for day in range(DAYS):
        covered = {
            u.org
            for mine in shifts.values()
            for s in mine
            if not s.night and (s.start - MONDAY) // DAY == day
            for u in s.units
        }
        assert covered == {u.org for u in UNITS}, day
