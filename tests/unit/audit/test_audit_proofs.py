"""Inclusion and consistency proofs from the database, checked as an outside auditor would;
retention pruning that keeps the log verifiable."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.exc import DBAPIError
from tests.unit.audit.conftest import disable_triggers, make_record

from rempart.audit.check import check_proof_document
from rempart.audit.heads import HeadVerifier
from rempart.audit.proofs import consistency_proof, inclusion_proof
from rempart.audit.retention import PruneRefused, prune_before
from rempart.audit.tables import audit_event
from rempart.audit.verify import verify_log
from rempart.wiring import Services

DAY = 86_400 * 1_000_000


def test_inclusion_proofs_check_out_for_records_across_tiles(
    filled: Callable[..., Services],
) -> None:
    services = filled(700, heads_every=350)
    public = services.audit.signer.public
    for seq in (0, 1, 255, 256, 511, 600, 699):
        proof = inclusion_proof(services.engine, seq)
        assert proof["tree_size"] == 700
        ok, message = check_proof_document(proof, public)
        assert ok, message
    old = inclusion_proof(services.engine, 10, tree_size=350)
    assert check_proof_document(old, public)[0]
    tampered = {**old, "leaf_index": 11}
    assert not check_proof_document(tampered, public)[0]


def test_consistency_proof_between_two_signed_heads(filled: Callable[..., Services]) -> None:
    services = filled(700, heads_every=350)
    proof = consistency_proof(services.engine, 350, 700)
    ok, message = check_proof_document(proof, services.audit.signer.public)
    assert ok, message
    proof["path"][0] = "00" * 32
    assert not check_proof_document(proof, services.audit.signer.public)[0]


def test_proof_requests_outside_the_log_are_clean_errors(filled: Callable[..., Services]) -> None:
    from rempart.errors import RempartError

    services = filled(10, heads_every=10)
    with pytest.raises(RempartError):
        inclusion_proof(services.engine, 10)
    with pytest.raises(RempartError):
        inclusion_proof(services.engine, 0, tree_size=7)  # no head was signed at 7
    with pytest.raises(RempartError):
        consistency_proof(services.engine, 3, 10)


def _old_log(services: Services, old: int, new: int) -> None:
    """`old` records from two years ago, then `new` from today, a head after each part."""
    past = int(time.time() * 1_000_000) - 730 * DAY
    services.audit.record(*(make_record(i, at=past + i) for i in range(old)))
    services.audit.sign_now()
    services.audit.record(*(make_record(old + i) for i in range(new)))
    services.audit.sign_now()


def test_pruning_keeps_the_log_verifiable_and_proofs_working(services: Services) -> None:
    _old_log(services, 600, 100)
    result = prune_before(services.audit, int(time.time() * 1e6) - 400 * DAY, "approval-42")
    assert result.pruned_below == 512  # the first recent record is 600, rounded down to a tile
    assert result.deleted == 512
    with services.engine.connect() as conn:
        left = conn.execute(select(func.min(audit_event.c.seq))).scalar()
    assert left == 512
    report = verify_log(
        services.engine, HeadVerifier(services.audit.signer.public), services.audit.heads_file
    )
    assert report.ok, report.problems
    assert report.pruned_below == 512
    services.audit.sign_now()
    proof = inclusion_proof(services.engine, 650)
    assert check_proof_document(proof, services.audit.signer.public)[0]


def test_rows_above_the_pruning_point_stay_undeletable(services: Services) -> None:
    _old_log(services, 300, 10)
    prune_before(services.audit, int(time.time() * 1e6) - 400 * DAY, "approval-1")
    with pytest.raises(DBAPIError, match="append-only"), services.engine.begin() as conn:
        conn.execute(delete(audit_event).where(audit_event.c.seq == 290))


def test_pruning_inside_the_retention_period_is_refused(services: Services) -> None:
    _old_log(services, 300, 10)
    services.audit.retention_days = 30  # a misconfiguration cannot go below six months
    with pytest.raises(PruneRefused, match="retention"):
        prune_before(services.audit, int(time.time() * 1e6) - 100 * DAY, "approval-1")
    with pytest.raises(PruneRefused, match="approval"):
        prune_before(services.audit, int(time.time() * 1e6) - 400 * DAY, "")


def test_a_tampered_log_is_not_pruned(services: Services) -> None:
    _old_log(services, 300, 10)
    with services.engine.begin() as conn:
        disable_triggers(conn)
        conn.execute(delete(audit_event).where(audit_event.c.seq == 5))
    with pytest.raises(PruneRefused, match="does not verify"):
        prune_before(services.audit, int(time.time() * 1e6) - 400 * DAY, "approval-1")


def test_a_forged_pruning_point_is_reported(services: Services) -> None:
    from sqlalchemy import insert

    from rempart.audit.tables import audit_prune

    _old_log(services, 300, 10)
    with services.engine.begin() as conn:
        conn.execute(
            insert(audit_prune).values(
                size=256,
                at=1,
                cutoff=1,
                approval_id="none",
                frontier=b"\x00" * 32,
                key_id="x",
                signature=b"\x00" * 64,
            )
        )
        conn.execute(delete(audit_event).where(audit_event.c.seq < 256))  # trigger lets it go
    report = verify_log(
        services.engine, HeadVerifier(services.audit.signer.public), services.audit.heads_file
    )
    assert not report.ok
    assert "forged-prune-point" in {p.kind for p in report.problems}
