"""Low-level helpers: ids, weighted picks, French local time stamps."""

import random
import uuid
from datetime import date

from rempart.seed.rand import Weighted, derive_int, iso_datetime, new_id, rng_for


def test_new_id_is_a_standard_uuid4() -> None:
    for seed in range(200):
        expected = uuid.UUID(int=random.Random(seed).getrandbits(128), version=4)
        assert new_id(random.Random(seed)) == str(expected)
        assert uuid.UUID(new_id(random.Random(seed))).version == 4


def test_derived_streams_are_stable_and_independent() -> None:
    assert derive_int(1, "patient", 5) == derive_int(1, "patient", 5)
    assert derive_int(1, "patient", 5) != derive_int(1, "patient", 6)
    assert derive_int(1, "patient", 5) != derive_int(2, "patient", 5)
    assert rng_for(1, "x").random() == rng_for(1, "x").random()


def test_weighted_follows_weights() -> None:
    picker = Weighted([("rare", 1.0), ("common", 9.0)])
    rng = random.Random(0)
    draws = [picker.pick(rng) for _ in range(10_000)]
    assert 0.07 < draws.count("rare") / len(draws) < 0.13


def test_paris_offsets_follow_daylight_saving_time() -> None:
    # 2026: summer time from Sunday 29 March to Sunday 25 October.
    def offset(day: date) -> str:
        return iso_datetime(day.toordinal(), 600)[-6:]

    assert offset(date(2026, 1, 15)) == "+01:00"
    assert offset(date(2026, 3, 28)) == "+01:00"
    assert offset(date(2026, 3, 29)) == "+02:00"
    assert offset(date(2026, 7, 14)) == "+02:00"
    assert offset(date(2026, 10, 24)) == "+02:00"
    assert offset(date(2026, 10, 25)) == "+01:00"
    assert iso_datetime(date(2026, 7, 14).toordinal(), 1440 + 61) == "2026-07-15T01:01:00+02:00"
