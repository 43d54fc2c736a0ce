"""`rempart seed`: the synthetic hospital into the store, its staff and patient accounts."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from rempart.access.membership import seed_memberships
from rempart.access.pdp import system_decision
from rempart.access.roles import Role
from rempart.clock import now_micros
from rempart.fhir import validate
from rempart.identity.accounts import NewAccount, prepare_account
from rempart.identity.tables import account
from rempart.ingest.workers import Lanes, default_workers, prepare_patients
from rempart.seed import SeedAccount, generate
from rempart.store.bulk import bulk_connection
from rempart.store.indexstage import IndexStage
from rempart.store.ingest import ingest_batch, refresh_statistics, write_prepared
from rempart.store.keyring import SEARCH_OWNER
from rempart.store.tables import search_index
from rempart.wiring import Services

# Patients per transaction (about 21 resources and 700 index rows each). Worker processes
# prepare the next batches while the writing process stores one.
BATCH_PATIENTS = 250
# Blind-index rows a patient brings, rounded down (555 at 10,000 patients): what the load tells
# the index stage to expect, which drops the PostgreSQL index's key for the load if it holds fewer.
INDEX_ROWS_PER_PATIENT = 500
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
    store = services.store
    directory = hospital.directory()
    for resource in directory:
        validate(resource)
    total = 0
    with services.engine.begin() as conn:
        total += ingest_batch(store, conn, decision, directory)
    ranges = [(s, min(s + BATCH_PATIENTS, patients)) for s in range(0, patients, BATCH_PATIENTS)]
    search_key = store.keyring.ensure(SEARCH_OWNER)
    workers = default_workers(len(ranges))
    # Argon2id of the staff (~0.2 CPU s each) is computed from the start, at the lowest CPU
    # priority: it takes what the load leaves idle (mostly the final index merge, which runs
    # on one core). The accounts are inserted once the load is done (on SQLite an insert
    # meanwhile would wait behind the load's back-to-back transactions for the write lock).
    accounts = _Accounts(services, hospital.accounts)
    with (
        accounts,
        Lanes(search_key, workers=workers, patients=patients, seed=seed) as lanes,
        bulk_connection(services.engine) as conn,
    ):
        stage = IndexStage(conn, search_index, expected=patients * INDEX_ROWS_PER_PATIENT)
        try:
            # Each batch's lastUpdated is read from this process's clock as the batch is
            # handed out (seconds before its commit), so batches stay in order.
            jobs = ((start, stop, now_micros()) for start, stop in ranges)
            batches = lanes.map(prepare_patients, jobs)
            for (start, stop), batch in zip(ranges, batches, strict=True):
                with conn.begin():
                    total += write_prepared(store, conn, decision, batch, stage=stage)
                if progress is not None:
                    progress(stop - start)
        finally:
            # Also when a batch failed: what was committed becomes findable.
            stage.merge()
        accounts.finish()
    # Their units and front desks, so the care-relationship policy has something to match.
    seed_memberships(services.engine, ((a.username, a.units) for a in hospital.accounts))
    # Decoy patients, known to the guard only as keyed tags (issue #7).
    with services.engine.begin() as conn:
        services.guard.decoys.plant(conn, hospital.decoy_patient_ids(), "seed")
    refresh_statistics(services.engine)
    if credentials_out is not None:
        write_credentials(credentials_out, hospital.accounts)
    return SeedReport(patients=patients, resources=total, accounts=len(hospital.accounts))


class _Accounts:
    """The staff and patient accounts: checked and hashed in threads from `__enter__` on
    (Argon2id releases the GIL), at the lowest CPU priority; `finish` waits for the hashes and
    stores the accounts. A load that fails cancels the hashes not started."""

    def __init__(self, services: Services, accounts: list[SeedAccount]) -> None:
        self._services = services
        self._accounts = accounts
        self._pool: ThreadPoolExecutor | None = None
        self._futures: list[Future[NewAccount]] = []

    def __enter__(self) -> _Accounts:
        self._pool = ThreadPoolExecutor(
            max_workers=os.cpu_count() or 2, initializer=_lowest_priority
        )
        self._futures = [self._pool.submit(self._prepare, a) for a in self._accounts]
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=kind is not None)

    def finish(self) -> None:
        identity = self._services.identity
        for future in self._futures:
            identity.store_account(future.result())

    def _prepare(self, acct: SeedAccount) -> NewAccount:
        return prepare_account(
            self._services.identity.core,
            username=acct.username,
            password=acct.password,
            role=Role(acct.role),
            totp_secret=acct.totp_secret,
            display_name=acct.display_name,
            practitioner=acct.practitioner,
            patient=acct.patient,
        )


def _lowest_priority() -> None:
    """Nice 19 for the calling thread (Linux schedules threads one by one; the threads Argon2
    starts for its lanes inherit it). Elsewhere, or if refused, the thread keeps its priority."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


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
