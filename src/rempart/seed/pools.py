"""Pools of synthetic names and places, drawn from Faker ``fr_FR`` once per seed.

Faker calls cost tens of microseconds each, far too slow for 750,000 patients; drawing pools once
and picking from them with each patient's own RNG keeps generation fast and still deterministic.
Pools depend on the seed only (never on the patient count), so a patient's identity does not
change when the hospital is generated at another size.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from faker import Faker

from rempart.seed.rand import Weighted, rng_for

METRO_DEPTS: tuple[str, ...] = tuple(f"{n:02d}" for n in range(1, 96) if n != 20)
CORSICA_DEPTS = ("2A", "2B")
OVERSEAS_DEPTS = ("971", "972", "973", "974", "976")

# INSEE country codes (COG, 99 + 3 digits) with ISO 3166 alpha-2 for FHIR Address.country.
COUNTRIES: tuple[tuple[str, str, str], ...] = (
    ("99350", "MA", "Maroc"),
    ("99352", "DZ", "Algérie"),
    ("99351", "TN", "Tunisie"),
    ("99139", "PT", "Portugal"),
    ("99127", "IT", "Italie"),
    ("99134", "ES", "Espagne"),
    ("99109", "DE", "Allemagne"),
    ("99131", "BE", "Belgique"),
    ("99208", "TR", "Turquie"),
    ("99341", "SN", "Sénégal"),
    ("99114", "RO", "Roumanie"),
    ("99122", "PL", "Pologne"),
)

# How many synthetic communes each kind of department gets in the birth-place list. Each slot
# of that list holds at most 999 NIRs (the order number), which is what lets us guarantee unique
# NIRs without any shared state (see Pools.birth_slot).
_HOME_COMMUNES = 480
_NEARBY_COMMUNES = 60
_OTHER_METRO_COMMUNES = 7
_CORSICA_COMMUNES = 8
_OVERSEAS_COMMUNES = 8
NIR_ORDERS = 999


@dataclass(frozen=True, slots=True)
class Commune:
    insee: str  # 5-character INSEE code (2A004, 97105...)
    name: str
    postcode: str
    dept: str


@dataclass(frozen=True, slots=True)
class BirthSlot:
    """A birth place; abroad slots also fix the birth month (see Pools.birth_slot)."""

    insee: str  # as written in the NIR: commune code, or 99 + country code
    city: str | None
    country: str  # ISO alpha-2
    country_name: str | None
    month: int | None


@dataclass(frozen=True)
class Pools:
    male_first: tuple[str, ...]
    female_first: tuple[str, ...]
    family: tuple[str, ...]
    streets: tuple[str, ...]
    home_dept: str
    nearby_depts: tuple[str, ...]
    communes_by_dept: dict[str, tuple[Commune, ...]]
    residence: Weighted[Commune]
    birth_slots: tuple[BirthSlot, ...]
    insurer_names: tuple[str, ...]
    slot_multiplier: int
    slot_offset: int

    @property
    def capacity(self) -> int:
        """Largest patient count for which NIRs are guaranteed unique."""
        return len(self.birth_slots) * NIR_ORDERS

    def birth_slot(self, index: int) -> tuple[BirthSlot, int]:
        """The birth place and NIR order number of patient ``index``.

        An affine permutation of [0, capacity) maps distinct patients to distinct
        (slot, order) pairs, hence distinct NIRs, while spreading consecutive patients over
        unrelated places.
        """
        j = (self.slot_multiplier * index + self.slot_offset) % self.capacity
        return self.birth_slots[j // NIR_ORDERS], j % NIR_ORDERS + 1


def _non_empty(draw: list[str]) -> tuple[str, ...]:
    # Repeats are kept on purpose: they carry Faker's name frequencies (and homonyms, which
    # identity-vigilance features must cope with).
    return tuple(x for x in draw if x)


def _communes(fake: Faker, rng: random.Random, dept: str, count: int) -> list[Commune]:
    if dept in OVERSEAS_DEPTS:
        numbers = rng.sample(range(1, 35), count)
        return [
            Commune(f"{dept}{n:02d}", fake.city(), f"{dept}{rng.randrange(10):d}{n % 10}", dept)
            for n in numbers
        ]
    if dept in CORSICA_DEPTS:
        # 2A and 2B commune numbers never overlap, so a pre-1976 "20" NIR stays unique.
        parity = 1 if dept == "2A" else 0
        numbers = [n for n in rng.sample(range(1, 366), count * 3) if n % 2 == parity][:count]
        base = 200 if dept == "2A" else 202
        return [
            Commune(
                f"{dept}{n:03d}",
                fake.city(),
                f"20{base - 200 + rng.randrange(2)}{n % 100:02d}",
                dept,
            )
            for n in numbers
        ]
    numbers = rng.sample(range(1, 700), count)
    return [
        Commune(f"{dept}{n:03d}", fake.city(), f"{dept}{rng.randrange(1, 10)}{n % 100:02d}", dept)
        for n in numbers
    ]


def build_pools(seed: int) -> Pools:
    fake = Faker("fr_FR")
    fake.seed_instance(seed)
    rng = rng_for(seed, "pools")

    male = _non_empty([fake.first_name_male() for _ in range(1500)])
    female = _non_empty([fake.first_name_female() for _ in range(1500)])
    family = _non_empty([fake.last_name() for _ in range(4000)])
    streets = _non_empty([fake.street_name() for _ in range(3000)])

    metro = [d for d in METRO_DEPTS if d != "75"]
    home = rng.choice(metro)
    nearby = tuple(rng.sample([d for d in metro if d != home], 3))

    by_dept: dict[str, tuple[Commune, ...]] = {}
    for dept in (*METRO_DEPTS, *CORSICA_DEPTS, *OVERSEAS_DEPTS):
        if dept == home:
            count = _HOME_COMMUNES
        elif dept in nearby:
            count = _NEARBY_COMMUNES
        elif dept in CORSICA_DEPTS:
            count = _CORSICA_COMMUNES
        elif dept in OVERSEAS_DEPTS:
            count = _OVERSEAS_COMMUNES
        else:
            count = _OTHER_METRO_COMMUNES
        by_dept[dept] = tuple(_communes(fake, rng, dept, count))

    # Patients live mostly near the hospital: 80 % home department, 15 % nearby, 5 % elsewhere.
    residence_pairs: list[tuple[Commune, float]] = []
    for dept, communes in by_dept.items():
        share = 0.80 if dept == home else 0.05 if dept in nearby else 0.05 / 96
        residence_pairs.extend((c, share / len(communes)) for c in communes)

    slots = [BirthSlot(c.insee, c.name, "FR", None, None) for cs in by_dept.values() for c in cs]
    # Abroad, the NIR holds 99 + the country code instead of a commune, and we use few countries:
    # one slot per (country, birth month) gives them room (999 orders each) and a realistic
    # share of people born abroad (about 10 %).
    slots += [
        BirthSlot(code, None, iso, name, month)
        for code, iso, name in COUNTRIES
        for month in range(1, 13)
    ]
    rng.shuffle(slots)
    capacity = len(slots) * NIR_ORDERS
    multiplier = rng.randrange(capacity // 3, capacity)
    while math.gcd(multiplier, capacity) != 1:
        multiplier += 1

    insurers = tuple(
        f"Mutuelle {fake.last_name()} {rng.choice(_MUTUELLE_SUFFIX)}" for _ in range(8)
    )
    return Pools(
        male_first=male,
        female_first=female,
        family=family,
        streets=streets,
        home_dept=home,
        nearby_depts=nearby,
        communes_by_dept=by_dept,
        residence=Weighted(residence_pairs),
        birth_slots=tuple(slots),
        insurer_names=insurers,
        slot_multiplier=multiplier,
        slot_offset=rng.randrange(capacity),
    )


_MUTUELLE_SUFFIX = ("Santé", "Prévoyance", "Solidarité", "Famille", "Entreprises", "Avenir")
