"""Retention pruning: the one way audit records leave the database, and it keeps verifiability.

`prune_before(log, cutoff, approval_id)` is called by the four-eyes approval procedure (the
access package checks that two different people approved; this function refuses cutoffs inside
the retention period, whatever the approval says). It:

1. refuses a cutoff younger than the configured retention (default one year, never under six
   months) and refuses to prune a log that does not verify (pruning would destroy evidence);
2. picks the pruning point P: the first record at or after the cutoff, rounded down to a
   multiple of 256 so that every proof still finds its stored subtree hashes;
3. signs a tree head at P and a pruning statement (P, cutoff, approval, the compact range at P),
   both kept in the database, the head also in the heads file;
4. deletes the records below P: the delete trigger lets exactly those go.

After pruning, `audit verify` starts from the signed compact range at P: every later root is
still recomputed from the remaining records and checked against every later head.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, insert, select

from rempart.audit.heads import HeadVerifier, prune_message
from rempart.audit.issuer import head_row
from rempart.audit.log import AuditLog
from rempart.audit.merkle import Frontier, frontier_levels
from rempart.audit.proofs import _Subtrees
from rempart.audit.records import AuditRecord
from rempart.audit.settings import MIN_RETENTION_DAYS
from rempart.audit.tables import audit_event, audit_head, audit_prune
from rempart.audit.verify import verify_log
from rempart.clock import datetime_to_micros, now_micros
from rempart.errors import RempartError

DAY = 86_400 * 1_000_000
TILE = 256


class PruneRefused(RempartError):
    status = 409
    code = "business-rule"


@dataclass(frozen=True)
class PruneResult:
    pruned_below: int
    deleted: int
    cutoff: int


def prune_before(
    log: AuditLog, cutoff: datetime | int, approval_id: str, *, now: int | None = None
) -> PruneResult:
    cut = cutoff if isinstance(cutoff, int) else datetime_to_micros(cutoff)
    now = now if now is not None else now_micros()
    retention = max(log.retention_days, MIN_RETENTION_DAYS)
    if cut > now - retention * DAY:
        raise PruneRefused(
            f"records younger than the retention period ({retention} days) cannot be pruned"
        )
    if not approval_id or len(approval_id) > 64:
        raise PruneRefused("pruning needs the id of a four-eyes approval (1 to 64 characters)")
    report = verify_log(log.engine, HeadVerifier(log.signer.public), log.heads_file)
    if not report.ok:
        raise PruneRefused(
            "the audit log does not verify (first bad position "
            f"{report.first_bad_position}); it must not be pruned: investigate first"
        )
    with log.engine.connect() as conn:
        first_after = conn.execute(
            select(func.min(audit_event.c.seq)).where(audit_event.c.at >= cut)
        ).scalar()
        end = conn.execute(select(func.max(audit_event.c.seq))).scalar()
        signed = conn.execute(select(func.max(audit_head.c.tree_size))).scalar() or 0
        current = conn.execute(select(func.max(audit_prune.c.size))).scalar() or 0
    limit = first_after if first_after is not None else (end + 1 if end is not None else 0)
    size = min(limit, signed) // TILE * TILE
    if size <= current:
        return PruneResult(current, 0, cut)
    with log.engine.connect() as conn:
        subtree = _Subtrees(conn)
        hashes, start = [], 0
        for level in frontier_levels(size):
            hashes.append(subtree(start, 1 << level))
            start += 1 << level
    frontier = Frontier(size, hashes)
    root = frontier.root()
    at = now_micros()
    head = log.signer.sign_head(size, at, root)
    statement = log.signer.sign(prune_message(size, cut, at, approval_id, root))
    with log.engine.begin() as conn:
        if (
            conn.execute(
                select(audit_head.c.tree_size).where(audit_head.c.tree_size == size)
            ).first()
            is None
        ):
            conn.execute(insert(audit_head).values(**head_row(head)))
        conn.execute(
            insert(audit_prune).values(
                size=size,
                at=at,
                cutoff=cut,
                approval_id=approval_id,
                frontier=frontier.pack(),
                key_id=log.signer.key_id,
                signature=statement,
            )
        )
        deleted = conn.execute(delete(audit_event).where(audit_event.c.seq < size)).rowcount
    log.heads_file.append(head)
    log.record(
        AuditRecord(
            action="audit-prune",
            outcome="success",
            ip="local",
            user_agent="rempart/retention",
            detail=f"pruned below {size} (cutoff {cut}) approval {approval_id}",
        )
    )
    return PruneResult(size, int(deleted), cut)
