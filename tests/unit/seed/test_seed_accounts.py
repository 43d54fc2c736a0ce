"""Seed accounts: roles, links to the directory and to patients, strong secrets."""

import string
import unicodedata
from collections import Counter

import pyotp

from rempart.seed import Hospital, SeedAccount, generate


def fold(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()


def test_roles_are_all_present(hospital: Hospital) -> None:
    roles = Counter(a.role for a in hospital.accounts)
    assert roles["admin"] >= 2
    assert roles["security_officer"] >= 1
    assert roles["secretary"] == 2
    assert roles["patient"] == 5
    assert set(roles) == {"admin", "security_officer", "clinician", "secretary", "patient"}


def test_a_clinician_account_per_unit_one_per_person(
    hospital: Hospital, directory: list[dict]
) -> None:
    unit_of = {
        f"Practitioner/{r['practitioner']['reference'].split('/')[1]}": r["organization"][
            "reference"
        ]
        for r in directory
        if r["resourceType"] == "PractitionerRole" and "organization" in r
    }
    units = {
        f"Organization/{o['id']}"
        for o in directory
        if o["resourceType"] == "Organization" and o["type"][0]["coding"][0]["code"] == "dept"
    }
    clinicians = [a for a in hospital.accounts if a.role == "clinician"]
    linked = [a.practitioner for a in clinicians]
    assert all(p in unit_of for p in linked)  # hospital doctors, not GPs
    assert len(set(linked)) == len(linked)
    assert {unit_of[p] for p in linked if p} == units
    for account in hospital.accounts:
        if account.role != "clinician":
            assert account.practitioner is None
        if account.role != "patient":
            assert account.patient is None


def test_patient_accounts_link_to_living_adults_without_naming_them(
    hospital: Hospital, patients: list[list[dict]]
) -> None:
    by_id = {f"Patient/{rs[0]['id']}": rs[0] for rs in patients}
    for account in (a for a in hospital.accounts if a.role == "patient"):
        assert account.username.startswith("patient.")
        patient = by_id[account.patient or ""]
        assert "deceasedDateTime" not in patient
        names = [n["family"] for n in patient["name"]] + [
            g for n in patient["name"] for g in n["given"]
        ]
        for name in names:
            for part in fold(name).replace("-", " ").split():
                assert part not in account.username
        assert patient["name"][-1]["family"] in account.display_name


def test_usernames_unique_and_passwords_strong(hospital: Hospital) -> None:
    usernames = [a.username for a in hospital.accounts]
    assert len(set(usernames)) == len(usernames)
    passwords = [a.password for a in hospital.accounts]
    assert len(set(passwords)) == len(passwords)
    for password in passwords:
        assert len(password) >= 20
        assert any(c in string.ascii_lowercase for c in password)
        assert any(c in string.ascii_uppercase for c in password)
        assert any(c in string.digits for c in password)
        assert any(not c.isalnum() for c in password)


def test_totp_secrets_work_with_pyotp(hospital: Hospital) -> None:
    secrets = [a.totp_secret for a in hospital.accounts]
    assert len(set(secrets)) == len(secrets)
    for secret in secrets:
        assert len(secret) == 32
        assert set(secret) <= set(string.ascii_uppercase + "234567")
        totp = pyotp.TOTP(secret)
        assert totp.verify(totp.now())


def test_accounts_are_deterministic_per_seed() -> None:
    first = generate(50, seed=11).accounts
    assert first == generate(50, seed=11).accounts
    other = generate(50, seed=12).accounts
    assert {a.password for a in first}.isdisjoint({a.password for a in other})
    assert all(isinstance(a, SeedAccount) for a in first)


def test_small_hospitals_get_fewer_patient_accounts() -> None:
    assert [a for a in generate(0).accounts if a.role == "patient"] == []
    assert len([a for a in generate(3).accounts if a.role == "patient"]) <= 3
