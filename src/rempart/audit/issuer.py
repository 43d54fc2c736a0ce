"""Signed tree heads of the audit log: issued by a small thread every few seconds while the log
grows, on demand (`sign_now`), and once more when the log closes. Each head is stored in
`audit_head`, appended to the heads file and sent to the witnesses, so that a rewrite of the
database is caught by what lies outside it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError as DbIntegrityError

from rempart.audit.heads import HeadsFile, HeadSigner, SignedHead, Witness
from rempart.audit.merkle import Frontier
from rempart.audit.tables import audit_head
from rempart.clock import now_micros

log = logging.getLogger("rempart.audit")


class HeadIssuer:
    def __init__(
        self,
        engine: Engine,
        signer: HeadSigner,
        heads_file: HeadsFile,
        witnesses: Sequence[Witness],
        interval: float,
        ours: Callable[[], Frontier | None],
        stored: Callable[[], Frontier],
    ) -> None:
        self.engine = engine
        self.signer = signer
        self.heads_file = heads_file
        self.witnesses = list(witnesses)
        self._interval = interval
        self._ours = ours  # the compact range after this process's last commit
        self._stored = stored  # the log's, as the database has it
        self._lock = threading.Lock()
        self._signed = -1  # the largest tree size this process has signed
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the signing thread (once; called holding the log's mutex)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="audit-heads")
            self._thread.daemon = True
            self._thread.start()

    def close(self, timeout: float) -> None:
        """Stop the thread, sign a last head if the log grew, close the witnesses."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self.issue(force=False)
        for witness in self.witnesses:
            witness.close()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.issue(force=False)

    def issue(self, *, force: bool) -> SignedHead | None:
        with self._lock:
            frontier = self._ours()
            try:
                # Writes append inside their own transactions (`record_in`), past our frontier.
                stored = self._stored()
                if frontier is None or stored.size > frontier.size:
                    frontier = stored
            except Exception as exc:
                if frontier is None:
                    log.critical("cannot read the audit log to sign a head: %s", exc)
                    return None
            if frontier.size == 0 or (frontier.size <= self._signed and not force):
                return None
            head = self.signer.sign_head(frontier.size, now_micros(), frontier.root())
            self._store(head)
            self._signed = head.tree_size
            return head

    def _store(self, head: SignedHead) -> None:
        try:
            with self.engine.begin() as conn:
                exists = conn.execute(
                    select(audit_head.c.tree_size).where(audit_head.c.tree_size == head.tree_size)
                ).first()
                if exists is None:
                    conn.execute(insert(audit_head).values(**head_row(head)))
        except DbIntegrityError:
            pass  # another process signed this very size a moment ago: its head stands
        except Exception as exc:
            log.critical("cannot store signed audit head %d: %s", head.tree_size, exc)
        try:
            self.heads_file.append(head)
        except OSError as exc:
            log.critical("cannot append to %s: %s", self.heads_file.path, exc)
        for witness in self.witnesses:
            try:
                witness.publish(head)
            except OSError as exc:
                log.error("audit witness failed: %s", exc)


def head_row(head: SignedHead) -> dict[str, Any]:
    return {
        "tree_size": head.tree_size,
        "at": head.at,
        "root": head.root,
        "key_id": head.key_id,
        "signature": head.signature,
    }
