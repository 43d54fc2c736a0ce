"""`rempart seed`: the synthetic hospital into the store, its staff and patient accounts."""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from rempart.access.membership import seed_memberships
from rempart.access.pdp import system_decision
from rempart.access.roles import Role
from rempart.fhir import validate
from rempart.identity.tables import account
from rempart.seed import Hospital, SeedAccount, generate
from rempart.store.ingest import ingest_batch
from rempart.wiring import Services

BATCH_PATIENTS = 250
CREDENTIALS_WARNING = (
    "SYNTHETIC DEMO ACCOUNTS ONLY. This file holds passwords and TOTP secrets in clear, for "
    "demos and tests. Never use it, or these accounts, with real patient data."
)


class AlreadySeeded(RuntimeError):
    pass


@dataclass(frozen=True)
class SeedReport:
    patients: int
    resources: int
    accounts: int


def seed_hospital(
    services: Services,
    *,
    patients: int,
    seed: int,
    credentials_out: Path | None,
    progress: Callable[[int], None] | None = None,
) -> SeedReport:
    with services.engine.connect() as conn:
        if conn.execute(select(func.count()).select_from(account)).scalar_one():
            raise AlreadySeeded("this database already has accounts; seed a fresh --home")
    hospital = generate(patients, seed)
    decision = system_decision("operator seed of a synthetic hospital")
    total = 0
    for batch in _validated_batches(hospital, patients, seed):
        with services.engine.begin() as conn:
            total += ingest_batch(services.store, conn, decision, batch)
        if progress is not None:
            progress(sum(1 for r in batch if r["resourceType"] == "Patient"))
    _create_accounts(services, hospital.accounts)
    # Their units and front desks, so the care-relationship policy has something to match.
    seed_memberships(services.engine, ((a.username, a.units) for a in hospital.accounts))
    if credentials_out is not None:
        write_credentials(credentials_out, hospital.accounts)
    return SeedReport(patients=patients, resources=total, accounts=len(hospital.accounts))


_WORKER_HOSPITALS: dict[tuple[int, int], Hospital] = {}


def _generate_and_validate(patients: int, seed: int, start: int, stop: int) -> list[dict[str, Any]]:
    """Worker side: patients [start, stop) of the hospital, each resource validated.

    The generator is tested, but nothing unvalidated is stored; validating in worker processes
    keeps the R4 check from halving the ingest rate.
    """
    batch = [
        r for b in generate(patients, seed).patient_batches(stop - start, start, stop) for r in b
    ]
    for resource in batch:
        validate(resource)
    return batch


def _validated_batches(
    hospital: Hospital, patients: int, seed: int
) -> Iterator[list[dict[str, Any]]]:
    """The directory, then patient batches, generated and validated ahead in other processes.

    A bounded window of pending batches keeps memory flat however large the hospital.
    """
    directory = hospital.directory()
    for resource in directory:
        validate(resource)
    yield directory
    ranges = [(s, min(s + BATCH_PATIENTS, patients)) for s in range(0, patients, BATCH_PATIENTS)]
    workers = max(1, (os.cpu_count() or 2) - 1)
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        pending: deque[Future[list[dict[str, Any]]]] = deque()
        for start, stop in ranges:
            pending.append(pool.submit(_generate_and_validate, patients, seed, start, stop))
            if len(pending) > 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _create_accounts(services: Services, accounts: list[SeedAccount]) -> None:
    def create(acct: SeedAccount) -> str:
        return services.identity.create_account(
            username=acct.username,
            password=acct.password,
            role=Role(acct.role),
            totp_secret=acct.totp_secret,
            display_name=acct.display_name,
            practitioner=acct.practitioner,
            patient=acct.patient,
        )

    # Argon2id is deliberately slow; hashing in parallel threads (it releases the GIL) halves it.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        list(pool.map(create, accounts))


def write_credentials(path: Path, accounts: list[SeedAccount]) -> None:
    doc = {
        "warning": CREDENTIALS_WARNING,
        "accounts": [
            {
                "username": a.username,
                "password": a.password,
                "totp_secret": a.totp_secret,
                "role": a.role,
                "practitioner": a.practitioner,
                "patient": a.patient,
                "display_name": a.display_name,
            }
            for a in accounts
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=2, ensure_ascii=False)
        fh.write("\n")
    os.chmod(path, 0o600)
