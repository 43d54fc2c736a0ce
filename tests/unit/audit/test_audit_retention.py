"""Retention through the four-eyes procedure, end to end: the one way records leave the log.

The default retention is one year: a request to prune younger records is approved by two
people and still fails; an approved request for older records prunes them, the log still
verifies, its proofs still check, and the pruning is itself recorded and signed.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import func, select
from tests.unit.access.support import new_staff
from tests.unit.audit.conftest import make_record

from rempart.access.kinds import AnyRequest
from rempart.access.roles import Role
from rempart.audit.check import check_proof_document
from rempart.audit.heads import HeadVerifier
from rempart.audit.proofs import inclusion_proof
from rempart.audit.retention import DAY
from rempart.audit.tables import audit_event, audit_prune
from rempart.audit.verify import verify_log
from rempart.context import RequestContext
from rempart.wiring import Services

CTX = RequestContext("10.0.0.3", "test")
_ANY: TypeAdapter[Any] = TypeAdapter(AnyRequest)


def _prune_request(services: Services, days_ago: int) -> Any:
    """An administrator asks; another administrator and a security officer approve."""
    asker, second = new_staff(services, Role.ADMIN), new_staff(services, Role.ADMIN)
    officer = new_staff(services, Role.SECURITY_OFFICER)
    before = (datetime.now(UTC) - timedelta(days=days_ago)).date().isoformat()
    requests = services.access.requests
    body = _ANY.validate_python({"kind": "prune-audit", "before": before})
    request_id = requests.submit(asker.principal(), CTX, body).id
    assert requests.approve(second.principal(), CTX, request_id, None).status == "pending"
    requests.approve(officer.principal(), CTX, request_id, None)
    return requests.get(officer.principal(), request_id)


def test_approved_pruning_keeps_a_verifiable_log_and_never_cuts_the_last_year(
    services: Services,
) -> None:
    assert services.audit.retention_days == 365  # the default
    past = int(time.time() * 1_000_000) - 730 * DAY
    services.audit.record(*(make_record(i, at=past + i) for i in range(600)))
    services.audit.sign_now()
    recent = int(time.time() * 1_000_000) - 300 * DAY
    services.audit.record(*(make_record(600 + i, at=recent + i) for i in range(100)))
    services.audit.sign_now()

    young = _prune_request(services, 200)  # inside the year: two approvals are not enough
    assert young.status == "failed"
    assert "retention" in (young.result or "")
    with services.engine.connect() as conn:
        assert conn.execute(select(func.min(audit_event.c.seq))).scalar() == 0

    done = _prune_request(services, 400)
    assert done.status == "done", done.result
    with services.engine.connect() as conn:
        first = conn.execute(select(func.min(audit_event.c.seq))).scalar()
        point = conn.execute(select(audit_prune)).one()
        pruned = conn.execute(
            select(audit_event.c.seq).where(audit_event.c.action == "audit-prune")
        ).all()
    assert first == 512  # the first record younger than the cutoff (600), down to a tile
    assert point.approval_id == done.id  # the pruning names its four-eyes request
    assert len(pruned) == 1  # and is itself a record of the log

    services.audit.sign_now()
    report = verify_log(
        services.engine, HeadVerifier(services.audit.signer.public), services.audit.heads_file
    )
    assert report.ok, report.problems
    assert report.pruned_below == 512
    proof = inclusion_proof(services.engine, 650)
    assert check_proof_document(proof, services.audit.signer.public)[0]
