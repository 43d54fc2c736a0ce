"""Shared generated hospitals: generating is deterministic, so one instance serves many tests."""

import pytest

from rempart.seed import Hospital, generate

SEED = 7
PATIENTS = 3000


@pytest.fixture(scope="session")
def hospital() -> Hospital:
    return generate(PATIENTS, seed=SEED)


@pytest.fixture(scope="session")
def directory(hospital: Hospital) -> list[dict]:
    return hospital.directory()


@pytest.fixture(scope="session")
def patients(hospital: Hospital) -> list[list[dict]]:
    """Resources of every patient, one list per patient (Patient first)."""
    return [hospital.patient_resources(i) for i in range(hospital.patients)]
