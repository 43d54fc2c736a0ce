"""The writer: durable group commit, failure reporting, several appenders, append-only tables."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from tests.unit.audit.conftest import make_record, second_log

from rempart.audit.entry import COLUMNS, row_leaf, stored_rows, to_row
from rempart.audit.log import AuditUnavailable
from rempart.audit.merkle import mth
from rempart.audit.tables import audit_batch, audit_event, audit_head
from rempart.audit.writer import Sql
from rempart.wiring import Services


def _rows(services: Services) -> list[Any]:
    with services.engine.connect() as conn:
        return conn.execute(select(audit_event).order_by(audit_event.c.seq)).all()


def test_records_are_durable_positioned_and_hashed_on_return(services: Services) -> None:
    services.audit.record(make_record(0), make_record(1))
    services.audit.record(make_record(2))
    rows = _rows(services)
    assert [r.seq for r in rows] == [0, 1, 2]
    for row in rows:
        assert row_leaf(tuple(row._mapping[c] for c in COLUMNS)) == row.leaf_hash
    assert mth([r.leaf_hash for r in rows]) == services.audit._frontier.root()  # type: ignore[union-attr]


def test_free_text_is_sealed_and_identifiers_are_plain(services: Services) -> None:
    services.audit.record(make_record(0, username="dr.house", reason="unconscious in the ER"))
    row = _rows(services)[0]
    with services.engine.connect() as conn:
        dump = " ".join(str(v) for v in conn.execute(select(audit_event)).one())
    assert "dr.house" not in dump
    assert "unconscious" not in dump
    assert row.patient == "pat-0"
    opened = services.audit.sealer.open(row.seq, row.sealed)
    assert opened == {"username": "dr.house", "reason": "unconscious in the ER"}


def test_oversized_values_are_cut_not_fatal_to_the_batch(services: Services) -> None:
    services.audit.record(make_record(0, resource_id="x" * 5000, user_agent="y" * 5000))
    row = _rows(services)[0]
    assert len(row.resource_id) == 64
    assert len(row.user_agent) == 256


def test_concurrent_requests_share_commits(services: Services) -> None:
    calls, threads = 400, 16

    def work(k: int) -> None:
        for i in range(calls // threads):
            services.audit.record(make_record(k * 1000 + i))

    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    with services.engine.connect() as conn:
        events = conn.execute(select(func.count()).select_from(audit_event)).scalar_one()
        batches = conn.execute(select(func.count()).select_from(audit_batch)).scalar_one()
    assert events == calls
    assert batches < calls  # several requests per transaction: group commit at work


def test_a_failed_write_fails_every_caller_and_the_log_recovers(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    services.audit.record(make_record(0))
    original = services.audit._writer.append

    def broken(records: list[Any], prepared: Any = None) -> bool:
        raise OSError("disk full")

    monkeypatch.setattr(services.audit._writer, "append", broken)
    with pytest.raises(AuditUnavailable) as caught:
        services.audit.record(make_record(1))
    assert caught.value.status == 503
    monkeypatch.setattr(services.audit._writer, "append", original)
    services.audit.record(make_record(2))
    assert [r.seq for r in _rows(services)] == [0, 1]


def test_a_database_error_mid_batch_rolls_back_the_whole_batch(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    services.audit.record(make_record(0))
    real = Sql.of
    # The records go in, then the checkpoint insert fails: nothing of the batch may stay.

    def broken(conn: Any) -> Sql:
        sql = copy.copy(real(conn))
        sql.batch = "INSERT INTO nowhere VALUES (1)"
        return sql

    monkeypatch.setattr(Sql, "of", broken)
    with pytest.raises(AuditUnavailable):
        services.audit.record(make_record(1), make_record(2))
    monkeypatch.undo()
    services.audit.record(make_record(3))
    rows = _rows(services)
    assert [r.seq for r in rows] == [0, 1]  # nothing of the failed batch, no gap
    assert rows[1].resource_id == "obs-3"


def test_two_processes_append_to_one_log(services: Services) -> None:
    other = second_log(services)
    try:
        for i in range(6):
            (services.audit if i % 2 else other).record(make_record(i), make_record(100 + i))
    finally:
        other.close()
    rows = _rows(services)
    assert [r.seq for r in rows] == list(range(12))
    services.audit.record(make_record(99))
    leaves = [r.leaf_hash for r in _rows(services)]
    assert services.audit._frontier.root() == mth(leaves)  # type: ignore[union-attr]


def test_closed_log_refuses_and_signs_a_final_head(services: Services) -> None:
    services.audit.record(make_record(0), make_record(1))
    services.audit.close()
    with pytest.raises(AuditUnavailable):
        services.audit.record(make_record(2))
    with services.engine.connect() as conn:
        sizes = conn.execute(select(audit_head.c.tree_size)).scalars().all()
    assert sizes == [2]
    assert services.audit.heads_file.read()[0][-1].tree_size == 2


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_event SET outcome = 'denied'",
        "DELETE FROM audit_event",
        "UPDATE audit_head SET tree_size = 99",
        "DELETE FROM audit_head",
        "DELETE FROM audit_batch",
        "DELETE FROM audit_node",
        "UPDATE audit_batch SET at = 0",
    ],
)
def test_the_database_refuses_update_and_delete(
    filled: Callable[..., Services], statement: str
) -> None:
    services = filled(300, heads_every=300)
    with pytest.raises(DBAPIError, match="append-only"), services.engine.begin() as conn:
        conn.execute(text(statement))


def test_postgresql_refuses_truncate(filled: Callable[..., Services]) -> None:
    services = filled(3)
    if services.engine.dialect.name != "postgresql":
        pytest.skip("TRUNCATE is PostgreSQL's")
    with pytest.raises(DBAPIError, match="append-only"), services.engine.begin() as conn:
        conn.execute(text("TRUNCATE audit_event"))


def test_stored_rows_are_the_rows_and_leaves_of_to_row(services: Services) -> None:
    records = [
        make_record(0),
        make_record(1, resource_id="x" * 5000, user_agent="y" * 5000, practitioner=None),
        make_record(2, username=None, reason=None, account_id="", ip=""),
    ]
    sealer = services.audit.sealer
    rows = stored_rows(41, records, sealer)
    assert [row[0] for row in rows] == [41, 42, 43]
    for row, record in zip(rows, records, strict=True):
        expected = to_row(row[0], record, sealer)
        # The sealed text has its own nonce each time: compare what it opens to.
        assert row[:-2] == expected[:-1]
        assert sealer.open(row[0], row[-2]) == sealer.open(row[0], expected[-1])
        assert row[-1] == row_leaf(row[:-1])
    assert len(rows[1][COLUMNS.index("resource_id")]) == 64
    assert len(rows[1][COLUMNS.index("user_agent")]) == 256
    assert rows[1][COLUMNS.index("practitioner")] is None
    assert rows[2][COLUMNS.index("account_id")] == ""
    assert rows[2][COLUMNS.index("sealed")] is None


def test_a_row_written_behind_the_writer_fails_its_batch_and_raises_an_alert(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone with database access inserts the log's next record themselves: the writer's
    batch collides with it (on PostgreSQL inside psycopg's pipeline, where the failure comes
    at the sync, not at the insert), nothing of the batch is stored, and the writer says why."""
    services.audit.record(make_record(0))
    alerts: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(
        services.audit._writer, "_alert", lambda kind, _msg, details: alerts.append((kind, details))
    )
    with services.engine.begin() as conn:
        forged = conn.execute(select(audit_event).where(audit_event.c.seq == 0)).one()._asdict()
        conn.execute(audit_event.insert().values({**forged, "seq": 1}))
    with pytest.raises(AuditUnavailable):
        services.audit.record(make_record(1), make_record(2))
    assert alerts == [("audit-log-foreign-row", {"position": 1})]
    with services.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(audit_batch)).scalar() == 1
    assert [r.resource_id for r in _rows(services)] == ["obs-0", "obs-0"]
