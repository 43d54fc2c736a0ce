"""Patient identity: INS (NIR), names, birth place, contact details, identity status."""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

from rempart.seed import codes
from rempart.seed.codes import JSON, concept, ref
from rempart.seed.directory import Directory, Person
from rempart.seed.nir import make_nir
from rempart.seed.pools import Commune, Pools
from rempart.seed.rand import Weighted, iso_day

# Age at the reference date: hospitals see more older patients than the general population.
_AGE_BANDS: Weighted[tuple[int, int]] = Weighted(
    [
        ((0, 0), 2),
        ((1, 17), 13),
        ((18, 44), 22),
        ((45, 64), 25),
        ((65, 79), 23),
        ((80, 99), 15),
    ]
)
_GIVEN_COUNT: Weighted[int] = Weighted([(1, 35), (2, 40), (3, 22), (4, 3)])
# Most identities are qualified since the INS became mandatory (2021); PROV/VALI remain for
# patients whose INS was never fetched, RECUP when it was fetched but no ID document seen.
_STATUS: Weighted[str] = Weighted([("QUAL", 62), ("RECUP", 13), ("VALI", 12), ("PROV", 13)])
_STATUS_LABEL = {
    "PROV": "Identité provisoire",
    "VALI": "Identité validée",
    "RECUP": "Identité récupérée",
    "QUAL": "Identité qualifiée",
}
# ARCEP numbers reserved for fiction, so no synthetic patient carries a real person's number.
_FICTION_LANDLINES = ("01 99 00", "02 61 91", "03 53 73", "04 65 71", "05 36 49")
_FICTION_MOBILE = "06 39 98"
_MAIL_DOMAINS = ("example.com", "example.net", "example.org")
_INS_START = date(2021, 1, 1).toordinal()


@dataclass(slots=True)
class PatientContext:
    """What the clinical generators need to know about the patient they are filling in."""

    index: int
    id: str
    gender: str
    birth: int  # date ordinal
    death: int | None
    age: int  # at the reference date, or at death
    given: str  # usual first name
    family: str  # usual family name
    nir: str
    commune: Commune
    gp: Person
    foreign_born: bool
    ame: bool
    decoy: bool


@lru_cache(maxsize=65536)
def ascii_slug(text: str) -> str:
    """Lower-case ASCII letters only (for e-mail local parts and usernames)."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(c for c in folded.lower() if c.isalpha())


def _birth(rng: random.Random, as_of: date, month: int | None) -> tuple[int, int]:
    low, high = _AGE_BANDS.pick(rng)
    year = as_of.year - rng.randint(low, high)
    month = month or rng.randint(1, 12)
    day = rng.randint(1, 28 if month == 2 else 30 if month in (4, 6, 9, 11) else 31)
    born = date(year, month, day)
    if born > as_of:
        born = date(year - 1, month, day)
    age = as_of.year - born.year - ((as_of.month, as_of.day) < (born.month, born.day))
    return born.toordinal(), age


def _death_probability(age: int) -> float:
    # Tuned so that about 1 % of the hospital's patients are deceased.
    return 0.003 if age < 65 else 0.015 if age < 80 else 0.04


def _given_names(rng: random.Random, pools: Pools, gender: str) -> list[str]:
    firsts = pools.female_first if gender == "female" else pools.male_first
    names: list[str] = []
    for _ in range(_GIVEN_COUNT.pick(rng)):
        name = rng.choice(firsts)
        if name not in names:
            names.append(name)
    if rng.random() < 0.06:
        names[0] = ("Marie-" if gender == "female" else "Jean-") + names[0]
    return names


def _telecom(rng: random.Random, given: str, family: str, adult: bool) -> list[JSON]:
    pair = f"{rng.randrange(100):02d} {rng.randrange(100):02d}"
    telecom: list[JSON] = [
        {"system": "phone", "value": f"{_FICTION_MOBILE} {pair}", "use": "mobile", "rank": 1}
    ]
    if rng.random() < 0.3:
        prefix = rng.choice(_FICTION_LANDLINES)
        line = f"{prefix} {rng.randrange(100):02d} {rng.randrange(100):02d}"
        telecom.append({"system": "phone", "value": line, "use": "home", "rank": 2})
    if adult and rng.random() < 0.65:
        suffix = str(rng.randrange(10, 99)) if rng.random() < 0.4 else ""
        local = f"{ascii_slug(given)}.{ascii_slug(family)}{suffix}"
        telecom.append({"system": "email", "value": f"{local}@{rng.choice(_MAIL_DOMAINS)}"})
    return telecom


def build_patient(
    rng: random.Random,
    *,
    index: int,
    patient_id: str,
    pools: Pools,
    directory: Directory,
    as_of: date,
    decoy: bool,
) -> tuple[PatientContext, JSON]:
    slot, order = pools.birth_slot(index)
    gender = "female" if rng.random() < 0.52 else "male"
    birth, age = _birth(rng, as_of, slot.month)
    born = date.fromordinal(birth)
    death: int | None = None
    if rng.random() < _death_probability(age):
        death = max(birth + 1, as_of.toordinal() - rng.randint(1, 4 * 365))
        age = (death - birth) // 365
    adult = age >= 18

    nir_place = slot.insee
    if nir_place[:2] in ("2A", "2B") and born.year < 1976:
        nir_place = "20" + nir_place[2:]  # Corsica was one department (20) until 1976
    nir = make_nir(2 if gender == "female" else 1, born.year, born.month, nir_place, order)

    given = _given_names(rng, pools, gender)
    birth_family = rng.choice(pools.family)
    names: list[JSON] = [
        {
            "extension": [{"url": codes.EXT_BIRTH_LIST_GIVEN_NAME, "valueString": " ".join(given)}],
            "use": "official",
            "family": birth_family.upper(),
            "given": given,
        }
    ]
    family = birth_family
    married_share = 0.55 if gender == "female" else 0.02
    if age >= 22 and rng.random() < married_share:
        family = rng.choice(pools.family)
        names.append({"use": "usual", "family": family.upper(), "given": [given[0]]})

    foreign_born = slot.country != "FR"
    ame = foreign_born and adult and rng.random() < 0.12
    status = rng.choice(("PROV", "VALI")) if ame else _STATUS.pick(rng)
    reliability: list[JSON] = [
        {
            "url": "identityStatus",
            "valueCoding": {
                "system": codes.CS_IDENTITY_STATUS,
                "code": status,
                "display": _STATUS_LABEL[status],
            },
        }
    ]
    if status in ("VALI", "QUAL"):
        # Mostly since the INS became mandatory; earlier for people who died before 2021.
        # A patient born on the reference day has no earlier day to be checked on.
        end = max(death or as_of.toordinal() - 1, birth)
        checked = rng.randint(max(birth, min(_INS_START, end - 30)), end)
        reliability.append({"url": "validationDate", "valueDate": iso_day(checked)})

    if foreign_born:
        birth_place: JSON = {"country": slot.country}
        if slot.country_name:
            birth_place["text"] = slot.country_name
    else:
        birth_place = {
            "extension": [
                {
                    "url": codes.EXT_INSEE_CODE,
                    "valueCoding": {"system": codes.CS_INSEE_COMMUNE, "code": slot.insee},
                }
            ],
            "city": slot.city,
            "country": "FR",
        }

    commune = pools.residence.pick(rng)
    gp = directory.gps[rng.randrange(len(directory.gps))]
    patient: JSON = {
        "resourceType": "Patient",
        "id": patient_id,
        "extension": [
            {"url": codes.EXT_IDENTITY_RELIABILITY, "extension": reliability},
            {"url": codes.EXT_BIRTH_PLACE, "valueAddress": birth_place},
        ],
        "identifier": [
            {
                "use": "official",
                "type": concept(codes.FR_IDENTIFIER_TYPE, "INS-NIR-TEST"),
                "system": codes.INS_NIR_TEST,
                "value": nir,
            },
            {
                "use": "usual",
                "type": concept(codes.V2_IDENTIFIER_TYPE, "PI", "Patient internal identifier"),
                "system": codes.IPP,
                "value": f"{index + 1:09d}",
                "assigner": ref("Organization", directory.establishments[0].org_id),
            },
        ],
        "active": True,
        "name": names,
        "telecom": _telecom(rng, given[0], family, adult),
        "gender": gender,
        "birthDate": born.isoformat(),
        "address": [
            {
                "use": "home",
                "type": "both",
                "line": [f"{rng.randint(1, 180)} {rng.choice(pools.streets)}"],
                "city": commune.name,
                "postalCode": commune.postcode,
                "country": "FR",
            }
        ],
        "generalPractitioner": [ref("Practitioner", gp.id)],
        "managingOrganization": ref("Organization", directory.establishments[0].org_id),
    }
    if death is not None:
        patient["deceasedDateTime"] = iso_day(death)
    context = PatientContext(
        index=index,
        id=patient_id,
        gender=gender,
        birth=birth,
        death=death,
        age=age,
        given=given[0],
        family=family,
        nir=nir,
        commune=commune,
        gp=gp,
        foreign_born=foreign_born,
        ame=ame,
        decoy=decoy,
    )
    return context, patient
