"""`rempart audit verify`: recompute the whole Merkle log and hold it against every signed head.

What is checked, in one pass over the records in position order:
- positions are 0, 1, 2... with no gap (a deleted or inserted row shows here);
- each row's leaf hash, recomputed from its columns, equals the stored one (an edited row is
  named exactly);
- the tree recomputed from the rows has, at each signed head's size, that head's root (a table
  rewritten with fresh, consistent hashes shows here: the DBA cannot sign a new head);
- every head, in the database and in the heads file outside it, carries a valid Ed25519
  signature, the two copies agree, and none is larger than the log (truncation);
- the subtree hashes kept for proofs and the writer's batch checkpoints match the recomputed tree;
- a retention pruning point, if any, is signed, and the tree continues from its compact range.

The first bad position is the smallest position any check incriminates. When only a head
catches the change (a consistent rewrite), the position is the first one that head covers and
the last good head did not.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from rempart.audit.heads import HeadsFile, HeadVerifier, SignedHead, prune_message
from rempart.audit.merkle import Frontier, root_of_frontier
from rempart.audit.scan import (
    CHUNK_LEVEL,
    ChunkJob,
    ChunkResult,
    scan_chunk,
    scan_in_process,
)
from rempart.audit.tables import audit_event, audit_head, audit_node, audit_prune

MAX_PROBLEMS = 50


@dataclass
class Problem:
    """`position` alone: that record is bad. With `end`: something in [position, end) is."""

    position: int | None
    kind: str
    message: str
    end: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"position": self.position, "kind": self.kind}
        if self.end is not None:
            out["end"] = self.end
        out["message"] = self.message
        return out


@dataclass
class VerifyReport:
    records: int = 0
    pruned_below: int = 0
    heads_in_database: int = 0
    heads_in_file: int = 0
    latest_signed_size: int = 0
    # Leaves [0, matched_prefix) are exactly as signed: a head of that size matched, and no
    # smaller one failed. No range problem can start before it.
    matched_prefix: int = 0
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_bad_position(self) -> int | None:
        """The smallest position named exactly, or the start of the earliest range that no
        exactly named position explains (never before the proven prefix)."""
        exact = [p.position for p in self.problems if p.position is not None and p.end is None]
        candidates = list(exact)
        # With every head matching, the records are proven and a bad subtree hash or
        # checkpoint is itself the damage; otherwise the records are, after the proven prefix.
        records_bad = any(p.kind == "root-mismatch" for p in self.problems)
        floor = self.matched_prefix if records_bad else 0
        for p in self.problems:
            if p.position is None or p.end is None:
                continue
            if not any(p.position <= e < p.end for e in exact):
                candidates.append(max(p.position, min(floor, p.end - 1)))
        return min(candidates) if candidates else None

    @property
    def unsigned_tail(self) -> int:
        return max(0, self.pruned_below + self.records - self.latest_signed_size)

    def add(self, position: int | None, kind: str, message: str, end: int | None = None) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Problem(position, kind, message, end))

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "tree_size": self.pruned_below + self.records,
            "records_checked": self.records,
            "pruned_below": self.pruned_below,
            "heads_in_database": self.heads_in_database,
            "heads_in_file": self.heads_in_file,
            "latest_signed_size": self.latest_signed_size,
            "unsigned_tail": self.unsigned_tail,
            "first_bad_position": self.first_bad_position,
            "problems": [p.to_json() for p in self.problems],
            "seconds": round(self.seconds, 3),
        }


def verify_log(
    engine: Engine,
    verifier: HeadVerifier,
    heads_file: HeadsFile,
    *,
    workers: int = 1,
    chunk_level: int = CHUNK_LEVEL,
) -> VerifyReport:
    """`workers` > 1 scans chunks of 2**chunk_level records in that many processes."""
    started = time.perf_counter()
    report = VerifyReport()
    with engine.connect() as conn:
        frontier = _start(conn, verifier, report)
        expected = _collect_heads(conn, verifier, heads_file, report)
        _walk(engine, conn, frontier, expected, report, workers, chunk_level)
    report.seconds = time.perf_counter() - started
    return report


def _start(conn: Connection, verifier: HeadVerifier, report: VerifyReport) -> Frontier:
    """The compact range to start from: empty, or the latest signed pruning point."""
    prune = conn.execute(select(audit_prune).order_by(audit_prune.c.size.desc()).limit(1)).first()
    if prune is None:
        return Frontier()
    frontier = Frontier.unpack(prune.size, prune.frontier)
    message = prune_message(prune.size, prune.cutoff, prune.at, prune.approval_id, frontier.root())
    if not verifier.valid(prune.key_id, message, prune.signature):
        report.add(
            0,
            "forged-prune-point",
            f"the pruning point at {prune.size} is not signed by the audit key: rows below it "
            "may have been deleted without an approved retention procedure",
        )
    report.pruned_below = prune.size
    return frontier


def _collect_heads(
    conn: Connection, verifier: HeadVerifier, heads_file: HeadsFile, report: VerifyReport
) -> dict[int, bytes]:
    """Validly signed heads by size (database and file), with every disagreement reported."""
    expected: dict[int, bytes] = {}
    in_db: dict[int, bytes] = {}
    for row in conn.execute(select(audit_head).order_by(audit_head.c.tree_size)):
        head = SignedHead(row.tree_size, row.at, row.root, row.key_id, row.signature)
        report.heads_in_database += 1
        if not verifier.head_valid(head):
            report.add(
                None,
                "forged-head",
                f"the database head at size {head.tree_size} has no valid signature",
            )
            continue
        in_db[head.tree_size] = head.root
        expected[head.tree_size] = head.root
    file_heads, bad_lines = heads_file.read()
    for line in bad_lines:
        report.add(None, "heads-file-damaged", f"{heads_file.path} line {line} does not parse")
    for head in file_heads:
        report.heads_in_file += 1
        if not verifier.head_valid(head):
            report.add(
                None,
                "forged-head",
                f"{heads_file.path}: the head at size {head.tree_size} has no valid signature",
            )
            continue
        known = expected.get(head.tree_size)
        if known is not None and known != head.root:
            report.add(
                None,
                "conflicting-heads",
                f"two validly signed heads at size {head.tree_size} have different roots",
            )
        if head.tree_size not in in_db and head.tree_size > report.pruned_below:
            report.add(
                None,
                "head-missing",
                f"the head at size {head.tree_size} is in {heads_file.path.name} but not in the "
                "database: audit_head rows were deleted",
            )
        expected.setdefault(head.tree_size, head.root)
    if expected:
        report.latest_signed_size = max(expected)
    return expected


def _chunks(start: int, rows: int, heads: list[int], init: Frontier, chunk: int) -> list[ChunkJob]:
    """Jobs covering [start, start + rows) on `chunk` boundaries; the last is open-ended so
    rows numbered beyond the expected end are seen too."""
    bounds = [start]
    edge = (start // chunk + 1) * chunk
    while edge < start + rows:
        bounds.append(edge)
        edge += chunk
    jobs = []
    for i, lo in enumerate(bounds):
        hi = bounds[i + 1] if i + 1 < len(bounds) else None
        inside = [h for h in heads if h > lo and (hi is None or h <= hi)]
        first = (init.size, init.pack()) if i == 0 else None
        jobs.append(ChunkJob(lo, hi, first, inside))
    return jobs


def _scan_all(
    engine: Engine, conn: Connection, jobs: list[ChunkJob], workers: int
) -> Iterator[ChunkResult]:
    if workers <= 1 or len(jobs) < 3:
        for job in jobs:
            yield scan_chunk(conn, job)
        return
    url = engine.url.render_as_string(hide_password=False)
    # "spawn": a forked child would inherit the server's threads and locks mid-flight.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        yield from pool.map(scan_in_process, [url] * len(jobs), jobs)


def _walk(
    engine: Engine,
    conn: Connection,
    frontier: Frontier,
    expected: dict[int, bytes],
    report: VerifyReport,
    workers: int,
    chunk_level: int,
) -> None:
    start = frontier.size
    chunk = 1 << chunk_level
    rows = conn.execute(select(func.count()).select_from(audit_event)).scalar_one()
    heads = sorted(s for s in expected if s > start)
    jobs = _chunks(start, int(rows), heads, frontier, chunk)
    # Subtrees above the chunk level are only formed here, when chunks are joined.
    stored_nodes = {
        (int(r.level), int(r.idx)): bytes(r.hash)
        for r in conn.execute(select(audit_node).where(audit_node.c.level > chunk_level))
    }
    bad_nodes: list[tuple[int, int]] = []

    def on_node(level: int, idx: int, h: bytes) -> None:
        if stored_nodes.get((level, idx), h) != h:
            bad_nodes.append((level, idx))

    last_good = report.matched_prefix = start
    tree: Frontier | None = None  # the absolute compact range at the current chunk's start
    position = start
    batch_last = start
    result: ChunkResult | None = None
    for result in _scan_all(engine, conn, jobs, workers):
        batch_last = max(batch_last, result.batch_last)
        for finding in result.findings:
            report.add(*finding)
        position = result.position
        prefix: list[bytes] | None
        if result.start == start:
            prefix = []
        else:
            prefix = tree.hashes if tree is not None and tree.size == result.start else None
        if prefix is not None:
            for size in sorted(result.heads):
                root = root_of_frontier([*prefix, *result.heads[size]])
                last_good = _check_head(root, size, expected[size], last_good, report)
            packed = b"".join(prefix)
            for stored, size in result.batch_prefixes.items():
                if stored != packed:
                    report.add(
                        result.start,
                        "altered-batch",
                        f"the writer's checkpoint at size {size} does not match the records",
                        end=size,
                    )
        if result.broken or prefix is None:
            tree = None  # past a gap the tree cannot be rebuilt: the gap is the finding
        elif result.start == start:
            tree = Frontier(start + result.count, result.frontier)
        elif result.count == chunk and tree is not None:
            tree.append_subtree(result.frontier[0], chunk_level, on_node)
    for level, idx in bad_nodes[:5]:
        report.add(
            idx << level,
            "altered-node",
            f"the stored hash of subtree {idx} at level {level} does not match the records",
            end=(idx + 1) << level,
        )
    report.records = position - start
    _ends(report, position, batch_last, result, expected)


def _ends(
    report: VerifyReport,
    position: int,
    batch_last: int,
    last: ChunkResult | None,
    expected: dict[int, bytes],
) -> None:
    """Where the log stops, held against the checkpoints and heads that say where it should."""
    if last is not None and last.batch_beyond is not None:
        report.add(
            position,
            "truncated",
            f"the writer's checkpoint says the log had {last.batch_beyond} records; it ends at "
            f"{position}: records from {position} on were deleted",
        )
    elif position > batch_last:
        report.add(
            batch_last,
            "foreign-record",
            f"records {batch_last} to {position - 1} were not written by the log writer "
            "(no batch checkpoint covers them)",
        )
    beyond = [s for s in expected if s > position]
    if beyond:
        report.add(
            position,
            "truncated",
            f"a signed head covers {max(beyond)} records but the log ends at {position}: "
            f"records from {position} on were deleted",
        )


def _check_head(
    root: bytes, size: int, expected: bytes, last_good: int, report: VerifyReport
) -> int:
    if root == expected:
        if not any(p.kind == "root-mismatch" for p in report.problems):
            report.matched_prefix = size
        return size
    report.add(
        last_good,
        "root-mismatch",
        f"the records do not match the signed head at size {size}: something in positions "
        f"{last_good} to {size - 1} was changed, inserted, removed or reordered",
        end=size,
    )
    return last_good
