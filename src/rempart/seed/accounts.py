"""Seed user accounts: administrators, a security officer, clinicians, secretaries, patients.

Passwords and TOTP secrets are derived from the seed so that test runs are reproducible; they are
strong by construction, but anyone who knows the seed knows them: seed accounts are for test and
demonstration databases only.
"""

from __future__ import annotations

import base64
import hashlib
import string
from dataclasses import dataclass

from rempart.seed.directory import Directory, Person
from rempart.seed.patients import ascii_slug
from rempart.seed.pools import Pools
from rempart.seed.rand import rng_for

PASSWORD_LENGTH = 24
_SYMBOLS = "-_.!@#%+=:?"
_ALPHABET = string.ascii_letters + string.digits + _SYMBOLS


@dataclass(frozen=True)
class SeedAccount:
    username: str
    password: str
    totp_secret: str  # base32, 32 characters (160 bits), as pyotp.random_base32() produces
    role: str  # "admin" | "security_officer" | "clinician" | "secretary" | "patient"
    practitioner: str | None  # "Practitioner/<id>"
    patient: str | None  # "Patient/<id>"
    display_name: str
    # Units or establishments the account works in ("Organization/<id>"): a clinician sees the
    # patients currently staying in their unit, a front desk its establishment's (issue #4).
    units: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PatientHolder:
    """What an account needs to know about a patient who gets one."""

    id: str
    given: str
    family: str


class _Stream:
    """Deterministic bytes for one account's secrets (SHAKE-256 of seed and username).

    A hash rather than ``random``: Mersenne Twister output can be predicted from a few values,
    and these strings are credentials, even if only for test databases.
    """

    def __init__(self, seed: int, username: str) -> None:
        self._data = hashlib.shake_256(f"rempart-seed\x1f{seed}\x1f{username}".encode()).digest(512)
        self._pos = 0

    def byte(self) -> int:
        value = self._data[self._pos]
        self._pos += 1
        return value

    def below(self, n: int) -> int:
        """Uniform in [0, n) for n <= 256 (rejection sampling, no modulo bias)."""
        limit = 256 - 256 % n
        while (value := self.byte()) >= limit:
            pass
        return value % n

    def choice(self, alphabet: str) -> str:
        return alphabet[self.below(len(alphabet))]


def _password(stream: _Stream) -> str:
    # One character of each class, then shuffled, so every password passes class-based rules.
    chars = [
        stream.choice(string.ascii_lowercase),
        stream.choice(string.ascii_uppercase),
        stream.choice(string.digits),
        stream.choice(_SYMBOLS),
        *(stream.choice(_ALPHABET) for _ in range(PASSWORD_LENGTH - 4)),
    ]
    for i in range(len(chars) - 1, 0, -1):  # Fisher-Yates
        j = stream.below(i + 1)
        chars[i], chars[j] = chars[j], chars[i]
    return "".join(chars)


def _totp_secret(stream: _Stream) -> str:
    return base64.b32encode(bytes(stream.byte() for _ in range(20))).decode("ascii")


class _Builder:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.accounts: list[SeedAccount] = []
        self.taken: set[str] = set()

    def _unique(self, base: str) -> str:
        name, n = base, 1
        while name in self.taken:
            n += 1
            name = f"{base}{n}"
        self.taken.add(name)
        return name

    def add(
        self,
        base: str,
        role: str,
        display: str,
        practitioner: str | None = None,
        patient: str | None = None,
        units: tuple[str, ...] = (),
    ) -> None:
        username = self._unique(base)
        stream = _Stream(self.seed, username)
        self.accounts.append(
            SeedAccount(
                username,
                _password(stream),
                _totp_secret(stream),
                role,
                practitioner,
                patient,
                display,
                units,
            )
        )


def _staff_base(given: str, family: str) -> str:
    return f"{ascii_slug(given)[:1]}.{ascii_slug(family)}"


def build_accounts(
    seed: int, pools: Pools, directory: Directory, patients: list[PatientHolder]
) -> list[SeedAccount]:
    builder = _Builder(seed)
    rng = rng_for(seed, "staff")
    for role, count in (("admin", 2), ("security_officer", 1), ("secretary", 2)):
        for number in range(count):
            female = rng.random() < 0.5
            given = rng.choice(pools.female_first if female else pools.male_first)
            family = rng.choice(pools.family)
            desk: tuple[str, ...] = ()
            if role == "secretary":  # one front desk per establishment, in turn
                site = directory.establishments[number % len(directory.establishments)]
                desk = (f"Organization/{site.org_id}",)
            builder.add(_staff_base(given, family), role, f"{given} {family.upper()}", units=desk)
    for unit in directory.units:
        doctor: Person = unit.doctors[0]  # one account per person: doctors work in one unit
        builder.add(
            _staff_base(doctor.given, doctor.family),
            "clinician",
            f"Dr {doctor.given} {doctor.family.upper()}",
            practitioner=f"Practitioner/{doctor.id}",
            units=(f"Organization/{unit.org_id}",),
        )
    for number, holder in enumerate(patients, start=1):
        # Numbered, never named: a username is not secret and must not reveal who is a patient.
        builder.add(
            f"patient.{number:04d}",
            "patient",
            f"{holder.given} {holder.family.upper()}",
            patient=f"Patient/{holder.id}",
        )
    return builder.accounts
