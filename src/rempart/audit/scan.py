"""One pass over a range of the log, for `audit verify`; ranges can run in parallel processes.

The log is cut at multiples of CHUNK_SIZE (2**20 records). A chunk that starts on such a
boundary is hashed on its own: its compact range is relative to its start, and because the start
is aligned above every subtree inside the chunk, the tree's compact range at any size inside it
is "the compact range at the chunk start" followed by the chunk's own. So chunks are scanned
independently (one process per core) and combined in order by `verify.py`. The first chunk
(which may start at a pruning point, not on a boundary) starts from the absolute compact range.

Per record: the position has no gap, and the columns hash to the stored leaf. Per chunk: the
stored subtree hashes (levels 8, 16) and the writer's checkpoints match the stored leaves.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection, select

from rempart.audit.entry import COLUMNS, FORMAT
from rempart.audit.merkle import HASH_SIZE, Frontier, frontier_levels, leaf_hash
from rempart.audit.tables import audit_batch, audit_node

CHUNK_LEVEL = 20
CHUNK_SIZE = 1 << CHUNK_LEVEL
PAGE = 50_000  # rows per query: bounded memory on both databases, no server-side cursor
MAX_CHUNK_PROBLEMS = 50

# (position, kind, message, end): end None means "this very record".
Finding = tuple[int, str, str, int | None]


@dataclass
class ChunkJob:
    start: int
    end: int | None  # exclusive; None: to the end of the table (the last chunk)
    init: tuple[int, bytes] | None  # absolute compact range (size, packed) for the first chunk
    heads: list[int]  # tree sizes in (start, end] whose compact range the caller needs


@dataclass
class ChunkResult:
    start: int
    count: int = 0  # positions covered while intact: start .. start + count - 1
    broken: bool = False  # a gap: the tree cannot be rebuilt past it
    position: int = 0  # the position after the last row seen
    findings: list[Finding] = field(default_factory=list)
    frontier: list[bytes] = field(default_factory=list)  # at start + count
    heads: dict[int, list[bytes]] = field(default_factory=dict)
    batch_prefixes: dict[bytes, int] = field(default_factory=dict)  # prefix -> first size
    batch_last: int = 0  # the last checkpoint size reached
    batch_beyond: int | None = None  # a checkpoint beyond the last row (last chunk only)

    def find(self, position: int, kind: str, message: str, end: int | None = None) -> None:
        if len(self.findings) < MAX_CHUNK_PROBLEMS:
            self.findings.append((position, kind, message, end))


def _rows(conn: Connection, start: int, end: int | None) -> Iterator[Any]:
    """Rows in position order, a page at a time, straight from the driver: SQLAlchemy's Row
    wrapper would cost as much as the hashing at ten million rows."""
    cols = ", ".join((*COLUMNS, "leaf_hash"))
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    upper = f" AND seq < {int(end)}" if end is not None else ""
    sql = (
        f"SELECT {cols} FROM audit_event WHERE seq >= {mark}{upper} "  # noqa: S608  (fixed names)
        f"ORDER BY seq LIMIT {PAGE}"
    )
    cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        while True:
            cur.execute(sql, (start,))
            rows = cur.fetchall()
            yield from rows
            if len(rows) < PAGE:
                return
            start = rows[-1][0] + 1
    finally:
        cur.close()


def _batches(conn: Connection, start: int, end: int | None) -> Iterator[tuple[int, bytes]]:
    while True:
        query = select(audit_batch.c.size, audit_batch.c.frontier).where(audit_batch.c.size > start)
        if end is not None:
            query = query.where(audit_batch.c.size <= end)
        rows = conn.execute(query.order_by(audit_batch.c.size).limit(PAGE)).all()
        yield from ((int(r.size), bytes(r.frontier)) for r in rows)
        if len(rows) < PAGE:
            return
        start = rows[-1].size


def _nodes(conn: Connection, start: int, end: int | None) -> dict[tuple[int, int], bytes]:
    out: dict[tuple[int, int], bytes] = {}
    for level in (8, 16):
        query = select(audit_node.c.idx, audit_node.c.hash).where(
            audit_node.c.level == level, audit_node.c.idx >= start >> level
        )
        if end is not None:
            query = query.where(audit_node.c.idx < (end >> level) + 1)
        out.update({(level, int(r.idx)): bytes(r.hash) for r in conn.execute(query)})
    return out


def scan_chunk(conn: Connection, job: ChunkJob) -> ChunkResult:
    start = job.start
    result = ChunkResult(start=start, position=start)
    absolute = job.init is not None
    frontier = Frontier.unpack(*job.init) if job.init is not None else Frontier()
    offset = 0 if absolute else start  # the frontier counts leaves from `offset`
    # A relative chunk's checkpoints hold the absolute compact range: the part for the
    # leaves before the chunk comes first, one hash per set bit of `start`.
    split = 0 if absolute else len(frontier_levels(start)) * HASH_SIZE
    nodes = _nodes(conn, start, job.end)
    bad_nodes: list[tuple[int, int]] = []

    def on_node(level: int, idx: int, h: bytes) -> None:
        idx += offset >> level
        if nodes.get((level, idx), h) != h:
            bad_nodes.append((level, idx))

    batches = _batches(conn, start, job.end)
    batch = next(batches, None)
    heads = set(job.heads)
    position = start
    append, dumps, fmt = frontier.append, orjson.dumps, FORMAT
    for row in _rows(conn, start, job.end):
        seq = row[0]
        if seq != position:
            result.find(
                position,
                "missing-record",
                f"position {position} is missing: the next record is numbered {seq}",
            )
            result.broken = True
            position = seq
        stored = bytes(row[-1])
        if leaf_hash(dumps((fmt, *row[:-1]))) != stored:
            result.find(
                position, "altered-record", f"record {position} does not match its leaf hash"
            )
        position += 1
        if result.broken:
            continue
        # The tree is built from the *stored* leaf hashes: "every row matches its leaf" and
        # "the leaves form the signed tree" are checked apart, so one edited row is named
        # exactly instead of spoiling every root after it. Stored subtrees complete only
        # when the 256th leaf of a tile lands.
        append(stored, on_node if position & 255 == 0 else None)
        if position in heads:
            result.heads[position] = list(frontier.hashes)
        while batch is not None and batch[0] <= position:
            size, packed = batch
            if size == position:
                if packed[split:] != frontier.pack():
                    result.find(
                        result.batch_last,
                        "altered-batch",
                        f"the writer's checkpoint at size {size} does not match the records",
                        size,
                    )
                if split:
                    result.batch_prefixes.setdefault(packed[:split], size)
            result.batch_last = size
            batch = next(batches, None)
    result.position = position
    result.count = frontier.size - start if absolute else frontier.size
    result.frontier = list(frontier.hashes)
    for level, idx in bad_nodes[:5]:
        result.find(
            idx << level,
            "altered-node",
            f"the stored hash of subtree {idx} at level {level} does not match the records",
            (idx + 1) << level,
        )
    if job.end is None and batch is not None:
        result.batch_beyond = max([batch[0], *(b[0] for b in batches)])
    return result


def scan_in_process(url: str, job: ChunkJob) -> ChunkResult:
    """Entry point of a worker process: its own engine, one chunk."""
    from rempart.store.db import make_engine

    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as conn:
            return scan_chunk(conn, job)
    finally:
        engine.dispose()
