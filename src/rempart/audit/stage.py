"""Building the next group commit while the current one is in the database.

When the log is busy, a leader commits batch after batch, and most of each commit is spent in
the database driver, which releases the GIL (SQLite's B-tree inserts, the WAL write and its
fsync; PostgreSQL's round trips). Meanwhile request threads keep queueing records. While a
commit is in flight the stager is *armed* with the batch being committed, and each record
queued then is built at once by the thread that queues it (sealing and hashing, ~5 us a
record), placed right after what is already staged: its row, leaf hash and Merkle nodes are
ready when the commit in flight is durable, and the next commit starts straight away. Building
leaves the serial path of the log, and no thread is woken for it.

Order and positions: staged tickets are built strictly one after the other on the end of the
batch in flight (`_part` continues its compact range), and the next leader takes staged
tickets before queued ones. When the log may not end where they were built to follow (the
commit failed, or found records appended by another process or by a write's own transaction),
the leader calls `reset`: staged tickets go back to the head of the queue, in order, to be
built again. And the writer stores prepared rows only if the log, read under its writer lock,
ends exactly where they were built to follow (writer.py): a wrong prediction costs time, never
a wrong position or a wrong tree.

Durability: staging settles nothing. A ticket is settled after the commit that holds its
records, as before.

Every method is called holding the log's mutex.
"""

from __future__ import annotations

import logging
from collections import deque

from rempart.audit.durable import Ticket
from rempart.audit.entry import Sealer, stored_rows
from rempart.audit.writer import Prepared

log = logging.getLogger("rempart.audit")

# Records of one call built as it is queued, at most. Building holds the log's mutex (~5 us a
# record), and every caller queueing meanwhile waits on it: a search page's 20 records held it
# long enough for the callers to pile up (measured: +1.3 to +2.6 us of CPU per record, no gain
# in rate). Larger calls are queued and built by the leader, in one pass, as before.
CALL_RECORDS = 4


class Stager:
    def __init__(self, sealer: Sealer, limit: int) -> None:
        self._sealer = sealer
        self._limit = limit  # records staged at most (a batch's)
        self._part: Prepared | None = None  # the batch being staged; None: not armed
        self._tickets: list[Ticket] = []
        self._count = 0  # records staged
        self._open = False  # more may be staged (armed, and no staging failure since)

    @property
    def busy(self) -> bool:
        """Tickets are staged: whoever leads must commit them next."""
        return bool(self._tickets)

    def arm(self, tip: Prepared, queue: deque[Ticket]) -> None:
        """Stage the tickets queued (up to the first one whose thread waits in place; see
        `AuditLog._enqueue`), and those to come, to follow `tip`: the batch about to be
        committed (nothing is staged yet)."""
        assert not self._tickets, "staged tickets follow an earlier batch"
        frontier = tip.frontier.copy()
        self._part = Prepared(frontier.size, frontier.pack(), [], [], frontier)
        self._open = True
        while queue and not queue[0].parked and self.stage(queue[0]):
            queue.popleft()

    def stage(self, ticket: Ticket) -> bool:
        """Build the ticket's rows after what is staged; False when not armed, full, or the
        call holds more than CALL_RECORDS records: the ticket is then queued as usual."""
        part = self._part
        if (
            part is None
            or not self._open
            or len(ticket.records) > CALL_RECORDS
            or self._count >= self._limit
        ):
            return False
        try:
            rows = stored_rows(part.frontier.size, ticket.records, self._sealer)
        except Exception:
            log.exception("audit staging failed; the leader builds the next records")
            self._open = False  # what is staged stays valid; nothing more until the next arm
            return False
        nodes = part.nodes

        def on_node(level: int, idx: int, h: bytes) -> None:
            nodes.append((level, idx, h))

        add = part.frontier.append
        for row in rows:
            add(row[-1], on_node)
        part.rows += rows
        self._tickets.append(ticket)
        self._count += len(ticket.records)
        return True

    def take(self) -> tuple[list[Ticket], Prepared | None, int]:
        """What is staged, in order, as one prepared batch, and its record count. Staging
        stops until the next `arm`."""
        tickets, part, count = self._tickets, self._part, self._count
        self._tickets, self._part, self._count, self._open = [], None, 0, False
        return tickets, (part if tickets else None), count

    def reset(self, queue: deque[Ticket]) -> None:
        """The log may not end where the staged rows were built to follow: their tickets go
        back to the head of the queue, to be built again, and staging stops."""
        tickets, _, _ = self.take()
        queue.extendleft(reversed(tickets))

    def pause(self) -> None:
        """Stop staging (nothing is staged: the leader is about to step down)."""
        assert not self._tickets, "staged tickets need a leader to commit them"
        self._part, self._open = None, False
