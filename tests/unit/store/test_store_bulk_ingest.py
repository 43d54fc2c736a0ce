"""Bulk ingest through worker processes stores exactly what the one-process path stores.

`seed` prepares batches in other processes (JSON, blind-index digests, care links) and seals
and writes them in this one (`store/ingest.py`, `ingest/workers.py`). Here a small hospital is
seeded in several batches, so through real worker processes, on both databases; then every
resource is read back and compared with the generator's output, every resource's index rows
with what the API path would have written, and the care links with what the policy derives.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Connection, select, text

from rempart.access import relations
from rempart.access.pdp import export_decision, system_decision
from rempart.access.tables import care_link, unit_membership
from rempart.bootstrap import initialise
from rempart.clock import micros_to_iso, now_micros
from rempart.config import load_settings
from rempart.errors import Forbidden
from rempart.fhir import patient_compartment
from rempart.identity.tables import account
from rempart.ingest import importer, seeding
from rempart.ingest.files import read
from rempart.ingest.workers import default_workers, prepare_chunk
from rempart.seed import generate
from rempart.store.codec import index_digests
from rempart.store.ingest import write_prepared
from rempart.store.tables import resource, search_index
from rempart.wiring import Services, open_services
from tests.conftest import _server_url, drop_pg_database, fresh_pg_database

PATIENTS = 18
SEED = 5
BATCH = 7  # three batches: more than one, so the seed starts worker processes


def _without_meta(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "meta"}


def _statistics_tables(conn: Connection) -> set[str]:
    if conn.dialect.name == "sqlite":
        return set(conn.execute(text("SELECT DISTINCT tbl FROM sqlite_stat1")).scalars())
    return set(conn.execute(text("SELECT DISTINCT tablename FROM pg_stats")).scalars())


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def seeded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Services]:
    """One seed per backend for the whole module (a seed hashes ~30 passwords with Argon2id)."""
    home = tmp_path_factory.mktemp(f"bulk-{request.param}")
    name = None
    if request.param == "sqlite":
        url = f"sqlite:///{home / 'rempart.sqlite3'}"
    else:
        admin: psycopg.Connection = request.getfixturevalue("pg_admin")
        name = fresh_pg_database(admin, request.getfixturevalue("pg_template"))
        url = _server_url(name)
    initialise(load_settings(home, url))
    services = open_services(load_settings(home, url), pool_size=2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(seeding, "BATCH_PATIENTS", BATCH)
        assert default_workers(-(-PATIENTS // BATCH)) >= 1
        report = seeding.seed_hospital(services, patients=PATIENTS, seed=SEED, credentials_out=None)
    hospital = generate(PATIENTS, SEED)
    expected = len(hospital.directory()) + sum(len(b) for b in hospital.patient_batches(PATIENTS))
    assert report.resources == expected
    yield services
    services.close()
    if name is not None:
        drop_pg_database(admin, name)


def test_every_seeded_resource_reads_back_as_generated(seeded: Services) -> None:
    hospital = generate(PATIENTS, SEED)
    decision = system_decision("test read-back")
    generated = hospital.directory() + [r for b in hospital.patient_batches(PATIENTS) for r in b]
    columns = select(resource.c.res_type, resource.c.res_id, resource.c.last_updated)
    with seeded.engine.connect() as conn:
        updated = {(r.res_type, r.res_id): r.last_updated for r in conn.execute(columns)}
    assert {(r["resourceType"], r["id"]) for r in generated} <= updated.keys()
    for body in generated:
        stored = seeded.store.read(decision, body["resourceType"], body["id"]).json()
        assert _without_meta(stored) == _without_meta(body)
        assert stored["meta"]["versionId"] == "1"
        stamp = updated[(body["resourceType"], body["id"])]
        assert stored["meta"]["lastUpdated"] == micros_to_iso(stamp)


def test_index_rows_and_care_links_are_those_of_the_one_process_path(seeded: Services) -> None:
    hospital = generate(PATIENTS, SEED)
    decision = system_decision("test read-back")
    patients = [r for b in hospital.patient_batches(PATIENTS) for r in b]
    with seeded.engine.connect() as conn:
        rows: dict[tuple[str, str], set[bytes]] = {}
        for row in conn.execute(select(search_index)):
            rows.setdefault((row.res_type, row.res_id), set()).add(row.digest)
        links = {
            (r.source_type, r.source_id, r.kind, r.actor, r.patient)
            for r in conn.execute(select(care_link))
        }
    for body in patients:
        stored = seeded.store.read(decision, body["resourceType"], body["id"]).json()
        key = (body["resourceType"], body["id"])
        assert rows[key] == set(index_digests(seeded.store.blind, *key, stored))
    sources = [(r["resourceType"], r["id"], patient_compartment(r), r) for r in patients]
    wanted, _ = relations.rows_many(sources, now=now_micros())
    assert {row[:5] for row in wanted} == links
    assert any(kind == relations.PARTICIPANT for _, _, kind, _, _ in links)


def test_every_account_exists_with_its_units_after_a_seed(seeded: Services) -> None:
    # On PostgreSQL the accounts are hashed and stored in threads during the load.
    hospital = generate(PATIENTS, SEED)
    with seeded.engine.connect() as conn:
        stored = {r.username: r.id for r in conn.execute(select(account.c.username, account.c.id))}
        members = set(conn.execute(select(unit_membership.c.account_id)).scalars())
    assert set(stored) == {a.username for a in hospital.accounts}
    assert {stored[a.username] for a in hospital.accounts if a.units} <= members


def test_statistics_exist_after_a_seed(seeded: Services) -> None:
    # The scope subquery (access/scope.py) is planned from statistics: seed leaves them.
    with seeded.engine.connect() as conn:
        tables = _statistics_tables(conn)
    assert {"resource", "search_index", "care_link"} <= tables


def test_a_prepared_batch_of_existing_resources_becomes_new_versions(seeded: Services) -> None:
    # A resource of its own (not the generated hospital's): other tests read those back.
    state = {"blind": seeded.store.blind}
    decision = system_decision("test re-ingest")
    for gender in ("female", "other"):
        body = {"resourceType": "Patient", "id": "bulk-reingest-1", "gender": gender}
        with seeded.engine.begin() as conn:
            prepared = prepare_chunk(state, [body], now_micros())
            assert write_prepared(seeded.store, conn, decision, prepared) == 1
    stored = seeded.store.read(decision, "Patient", "bulk-reingest-1")
    assert stored.version == 2
    assert stored.json()["gender"] == "other"


def test_an_import_through_worker_processes_validates_every_resource_and_reads_back(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Large imports validate and prepare in worker processes; force them for a small file.
    monkeypatch.setattr(importer, "PARALLEL_FROM", 1)
    monkeypatch.setattr(importer, "BATCH", 25)
    hospital = generate(4, SEED)
    resources = hospital.directory() + [r for b in hospital.patient_batches(4) for r in b]
    invalid = {"resourceType": "Patient", "id": "bad-1", "gender": "sometimes"}
    lines = [json.dumps(r) for r in resources[:10]] + [json.dumps(invalid)]
    lines += [json.dumps(r) for r in resources[10:]]
    path = tmp_path / "hospital.ndjson"
    path.write_text("\n".join(lines) + "\n")
    summary = importer.import_items(services.store, read(path))
    assert sum(summary.imported.values()) == len(resources)
    assert [r["source"] for r in summary.rejected] == ["hospital.ndjson:11"]
    assert "gender" in summary.rejected[0]["reason"]
    decision = system_decision("test read-back")
    for body in resources:
        stored = services.store.read(decision, body["resourceType"], body["id"]).json()
        assert _without_meta(stored) == _without_meta(body)
    with services.engine.connect() as conn:
        assert {"resource", "search_index", "care_link"} <= _statistics_tables(conn)


def _index_rows(services: Services) -> dict[tuple[str, str], set[bytes]]:
    rows: dict[tuple[str, str], set[bytes]] = {}
    with services.engine.connect() as conn:
        for row in conn.execute(select(search_index)):
            rows.setdefault((row.res_type, row.res_id), set()).add(row.digest)
    return rows


@pytest.mark.parametrize("keyless", [False, True])
def test_an_import_s_phases_are_indexed_as_their_resources_read(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keyless: bool
) -> None:
    """Each phase of an import (directory, patients, the rest) has its index rows deferred
    to the phase's end (on PostgreSQL, `keyless`: into an index whose key is dropped for the
    phase, as when importing into a new server). After the import every
    resource's index rows are exactly those of its stored version and the key is in force.
    A new resource the file holds twice (the second a new version) is not deferred: it has
    its second version's rows only."""
    monkeypatch.setattr(importer, "PARALLEL_FROM", 1)
    monkeypatch.setattr(importer, "BATCH", 25)
    # A large expectation makes PostgreSQL drop the key for each phase, a small one keeps it.
    monkeypatch.setattr(importer, "INDEX_ROWS_PER_RESOURCE", 10_000 if keyless else 1)
    hospital = generate(3, SEED)
    resources = hospital.directory() + [r for b in hospital.patient_batches(3) for r in b]
    observations = [r for r in resources if r["resourceType"] == "Observation"]
    twice = {**observations[0], "id": "import-twice"}
    others = [{**o, "id": f"import-other-{n}"} for n, o in enumerate(observations[:30])]
    files = {
        "hospital.ndjson": resources,
        # 30 others between the two versions: they are written in different batches.
        "twice.ndjson": [twice, *others, {**twice, "status": "amended"}],
    }
    decision = system_decision("test read-back")
    for name, bodies in files.items():
        path = tmp_path / name
        path.write_text("".join(json.dumps(r) + "\n" for r in bodies))
        summary = importer.import_items(services.store, read(path))
        assert summary.rejected == []
        assert sum(summary.imported.values()) == len(bodies)
        rows = _index_rows(services)
        for body in bodies:
            key = (body["resourceType"], body["id"])
            stored = services.store.read(decision, *key).json()
            assert rows[key] == set(index_digests(services.store.blind, *key, stored))
    stored = services.store.read(decision, "Observation", "import-twice")
    assert (stored.version, stored.json()["status"]) == (2, "amended")
    if services.engine.dialect.name == "postgresql":
        with services.engine.connect() as conn:
            key = conn.execute(
                text(
                    "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                    "WHERE conname = 'pk_search_index'"
                )
            ).scalar_one()
        assert key == "PRIMARY KEY (digest, res_type, res_id)"


def test_a_batch_mixing_new_and_existing_resources_stores_each_once(seeded: Services) -> None:
    """The new resource comes first: its row is in before the existing one conflicts, and must
    be taken back (PostgreSQL: the savepoint) before the batch goes the slow way."""
    state = {"blind": seeded.store.blind}
    decision = system_decision("test re-ingest")
    old = {"resourceType": "Patient", "id": "bulk-mixed-old", "gender": "female"}
    with seeded.engine.begin() as conn:
        write_prepared(seeded.store, conn, decision, prepare_chunk(state, [old], now_micros()))
    new = {"resourceType": "Patient", "id": "bulk-mixed-new", "gender": "male"}
    changed = {**old, "gender": "other"}
    with seeded.engine.begin() as conn:
        batch = prepare_chunk(state, [new, changed], now_micros())
        assert write_prepared(seeded.store, conn, decision, batch) == 2
    assert seeded.store.read(decision, "Patient", "bulk-mixed-new").version == 1
    assert seeded.store.read(decision, "Patient", "bulk-mixed-old").version == 2
    with seeded.engine.connect() as conn:
        ids = conn.execute(
            select(resource.c.res_id).where(resource.c.res_id.like("bulk-mixed-%"))
        ).scalars()
        assert sorted(ids) == ["bulk-mixed-new", "bulk-mixed-old"]


def test_importing_the_same_file_twice_makes_second_versions(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every batch of the second import conflicts (PostgreSQL: on its first row, under the
    savepoint) and goes the new-version way; nothing is stored twice."""
    monkeypatch.setattr(importer, "PARALLEL_FROM", 1)
    monkeypatch.setattr(importer, "BATCH", 25)
    hospital = generate(3, SEED)
    resources = hospital.directory() + [r for b in hospital.patient_batches(3) for r in b]
    path = tmp_path / "hospital.ndjson"
    path.write_text("".join(json.dumps(r) + "\n" for r in resources))
    for _ in range(2):
        summary = importer.import_items(services.store, read(path))
        assert sum(summary.imported.values()) == len(resources)
        assert summary.rejected == []
    decision = system_decision("test read-back")
    for body in resources[::7]:
        stored = services.store.read(decision, body["resourceType"], body["id"])
        assert stored.version == 2
        assert _without_meta(stored.json()) == _without_meta(body)
    with services.engine.connect() as conn:
        count = conn.execute(text("SELECT count(*) FROM resource")).scalar_one()
    assert count == len(resources)


def test_a_batch_the_decision_refuses_stores_nothing(seeded: Services) -> None:
    """The policy is asked after the optimistic insert of the batch's rows: refused, the
    caller's transaction rolls them back with everything else."""
    state = {"blind": seeded.store.blind}
    readonly = export_decision("bulk-refused", "Account/nobody", frozenset({"Patient"}))
    body = {"resourceType": "Patient", "id": "bulk-refused-1", "gender": "female"}
    with pytest.raises(Forbidden), seeded.engine.begin() as conn:
        write_prepared(seeded.store, conn, readonly, prepare_chunk(state, [body], now_micros()))
    with seeded.engine.connect() as conn:
        found = conn.execute(
            select(resource.c.res_id).where(resource.c.res_id == "bulk-refused-1")
        ).first()
    assert found is None
