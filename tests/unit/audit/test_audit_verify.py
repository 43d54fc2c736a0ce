"""`audit verify` catches every kind of tampering and names the first bad position.

Each test plays a DBA with full rights: the triggers are dropped first, as such a person could.
What catches them is the Merkle log and the signed heads kept outside the database.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, insert, select, text, update
from tests.unit.audit.conftest import disable_triggers, make_record

from rempart.audit.entry import COLUMNS, Sealer, row_leaf, to_row
from rempart.audit.heads import HeadVerifier
from rempart.audit.merkle import Frontier
from rempart.audit.tables import audit_batch, audit_event, audit_head, audit_node
from rempart.audit.verify import VerifyReport, verify_log
from rempart.wiring import Services

N = 1000


def _verify(services: Services) -> VerifyReport:
    verifier = HeadVerifier(services.audit.signer.public)
    return verify_log(services.engine, verifier, services.audit.heads_file)


def _kinds(report: VerifyReport) -> set[str]:
    return {p.kind for p in report.problems}


def _rewrite(services: Services, rows: list[tuple[Any, ...]]) -> None:
    """Replace the whole log by `rows` (column tuples without seq), with fresh leaf hashes,
    subtree hashes and checkpoints: a consistent tree, as a careful attacker would build."""
    frontier = Frontier()
    nodes: list[dict[str, Any]] = []
    values = []
    for seq, row in enumerate(rows):
        full = (seq, *row)
        leaf = row_leaf(full)
        frontier.append(
            leaf, lambda lvl, idx, h: nodes.append({"level": lvl, "idx": idx, "hash": h})
        )
        values.append({**dict(zip(COLUMNS, full, strict=True)), "leaf_hash": leaf})
    with services.engine.begin() as conn:
        disable_triggers(conn)
        for table in (audit_event, audit_node, audit_batch, audit_head):
            conn.execute(delete(table))
        conn.execute(insert(audit_event), values)
        if nodes:
            conn.execute(insert(audit_node), nodes)
        conn.execute(
            insert(audit_batch).values(size=len(rows), first=0, at=1, frontier=frontier.pack())
        )


def _columns(services: Services) -> list[tuple[Any, ...]]:
    with services.engine.connect() as conn:
        rows = conn.execute(
            select(*(audit_event.c[c] for c in COLUMNS)).order_by(audit_event.c.seq)
        ).all()
    return [tuple(r)[1:] for r in rows]


def test_an_intact_log_verifies(filled: Callable[..., Services]) -> None:
    services = filled(N)
    report = _verify(services)
    assert report.ok, report.problems
    assert report.records == N
    assert report.heads_in_database == report.heads_in_file == N // 100
    assert report.latest_signed_size == N
    assert report.unsigned_tail == 0


def test_an_edited_row_is_named_exactly(filled: Callable[..., Services]) -> None:
    services = filled(N)
    with services.engine.begin() as conn:
        disable_triggers(conn)
        conn.execute(update(audit_event).where(audit_event.c.seq == 437).values(patient="other"))
    report = _verify(services)
    assert not report.ok
    assert report.first_bad_position == 437
    assert "altered-record" in _kinds(report)


def test_an_edit_with_a_recomputed_leaf_hash_is_caught_by_the_signed_heads(
    filled: Callable[..., Services],
) -> None:
    services = filled(N)
    with services.engine.begin() as conn:
        disable_triggers(conn)
        row = conn.execute(
            select(*(audit_event.c[c] for c in COLUMNS)).where(audit_event.c.seq == 437)
        ).one()
        forged = (*tuple(row)[:11], "someone-else", *tuple(row)[12:])
        conn.execute(
            update(audit_event)
            .where(audit_event.c.seq == 437)
            .values(patient="someone-else", leaf_hash=row_leaf(forged))
        )
    report = _verify(services)
    assert "root-mismatch" in _kinds(report)
    assert report.first_bad_position == 400  # the last head that still matched covered 400


def test_a_deleted_row_is_named(filled: Callable[..., Services]) -> None:
    services = filled(N)
    with services.engine.begin() as conn:
        disable_triggers(conn)
        conn.execute(delete(audit_event).where(audit_event.c.seq == 250))
    report = _verify(services)
    assert report.first_bad_position == 250
    assert "missing-record" in _kinds(report)


def test_an_inserted_row_is_caught(filled: Callable[..., Services]) -> None:
    """Inserted in the middle (later rows renumbered, hashes recomputed) and at the end."""
    services = filled(N)
    rows = _columns(services)
    sealer: Sealer = services.audit.sealer
    extra = to_row(0, make_record(0, patient="planted"), sealer)[1:]
    _rewrite(services, [*rows[:600], extra, *rows[600:]])
    report = _verify(services)
    assert "root-mismatch" in _kinds(report)
    assert report.first_bad_position == 600


def test_a_row_appended_behind_the_writer_is_caught(filled: Callable[..., Services]) -> None:
    services = filled(N)
    row = to_row(N, make_record(0, patient="planted"), services.audit.sealer)
    with services.engine.begin() as conn:
        conn.execute(
            insert(audit_event).values(
                **dict(zip(COLUMNS, row, strict=True)), leaf_hash=row_leaf(row)
            )
        )
    report = _verify(services)
    assert report.first_bad_position == N
    assert "foreign-record" in _kinds(report)


def test_reordered_rows_are_caught(filled: Callable[..., Services]) -> None:
    services = filled(N)
    rows = _columns(services)
    rows[700], rows[701] = rows[701], rows[700]
    _rewrite(services, rows)
    report = _verify(services)
    assert "root-mismatch" in _kinds(report)
    assert report.first_bad_position == 700


def test_a_consistent_rewrite_of_the_whole_log_is_caught_by_the_heads_file(
    filled: Callable[..., Services],
) -> None:
    """New rows, new leaf hashes, new subtree hashes, new checkpoints, no heads left in the
    database: internally consistent. Only the signed heads outside the database disagree."""
    services = filled(N)
    rows = _columns(services)
    _rewrite(services, [(r[0] + 1, *r[1:]) for r in rows])  # every timestamp moved by 1 us
    report = _verify(services)
    assert not report.ok
    assert report.first_bad_position == 0
    assert {"root-mismatch", "head-missing"} <= _kinds(report)


def test_truncation_is_caught_even_with_heads_and_checkpoints_removed(
    filled: Callable[..., Services],
) -> None:
    services = filled(N)
    with services.engine.begin() as conn:
        disable_triggers(conn)
        conn.execute(delete(audit_event).where(audit_event.c.seq >= 900))
        conn.execute(delete(audit_batch).where(audit_batch.c.size > 900))
        conn.execute(delete(audit_head).where(audit_head.c.tree_size > 900))
    report = _verify(services)
    assert report.first_bad_position == 900
    assert "truncated" in _kinds(report)


def test_a_forged_head_and_a_damaged_heads_file_are_reported(
    filled: Callable[..., Services],
) -> None:
    services = filled(300)
    with services.engine.begin() as conn:
        disable_triggers(conn)
        conn.execute(
            insert(audit_head).values(
                tree_size=150, at=1, root=b"\x00" * 32, key_id="x" * 32, signature=b"\x01" * 64
            )
        )
    path = services.audit.heads_file.path
    lines = path.read_text().splitlines()
    doc = json.loads(lines[0])
    doc["root"] = "00" * 32
    path.write_text("\n".join([json.dumps(doc), "not json", *lines[1:]]) + "\n")
    kinds = _kinds(_verify(services))
    assert {"forged-head", "heads-file-damaged"} <= kinds


def test_verify_runs_from_the_command_line(filled: Callable[..., Services]) -> None:
    from typer.testing import CliRunner

    from rempart.cli import app

    services = filled(300)
    home, url = services.settings.home, services.settings.database_url
    runner = CliRunner()
    ok = runner.invoke(app, ["--home", str(home), "--database", url, "audit", "verify", "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["ok"] is True
    with services.engine.begin() as conn:
        disable_triggers(conn)
        conn.execute(text("UPDATE audit_event SET action = 'create' WHERE seq = 123"))
    bad = runner.invoke(app, ["--home", str(home), "--database", url, "audit", "verify", "--json"])
    assert bad.exit_code == 1
    assert json.loads(bad.stdout)["first_bad_position"] == 123


def _chunked(services: Services, workers: int) -> VerifyReport:
    verifier = HeadVerifier(services.audit.signer.public)
    return verify_log(
        services.engine, verifier, services.audit.heads_file, workers=workers, chunk_level=8
    )


def test_chunked_and_parallel_verification_agree_with_the_single_pass(
    filled: Callable[..., Services],
) -> None:
    """Chunks of 256 records scanned apart (in two processes) and joined: same verdicts."""
    services = filled(N, heads_every=90)
    for workers in (1, 2):
        report = _chunked(services, workers)
        assert report.ok, report.problems
        assert report.records == N
        assert report.matched_prefix == N
    with services.engine.begin() as conn:
        disable_triggers(conn)
        conn.execute(update(audit_event).where(audit_event.c.seq == 777).values(ip="1.1.1.1"))
    rows = _columns(services)
    for workers in (1, 2):
        assert _chunked(services, workers).first_bad_position == 777
    rows[600], rows[601] = rows[601], rows[600]
    _rewrite(services, rows)
    for workers in (1, 2):
        report = _chunked(services, workers)
        assert report.first_bad_position == 540, report.problems  # last good head: 540
        assert "root-mismatch" in _kinds(report)


def test_chunked_verification_catches_altered_subtree_hashes(
    filled: Callable[..., Services],
) -> None:
    services = filled(N)
    with services.engine.begin() as conn:
        disable_triggers(conn)
        conn.execute(
            update(audit_node)
            .where(audit_node.c.level == 8, audit_node.c.idx == 2)
            .values(hash=b"\x00" * 32)
        )
    report = _chunked(services, 1)
    assert "altered-node" in _kinds(report)
    assert report.first_bad_position == 512
