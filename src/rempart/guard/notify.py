"""Where a guard alert goes: the security officer's queue and the `rempart.security` JSON log
line (`rempart.alerts`), plus, when config.toml names them, a webhook and syslog.

The webhook is POSTed from one background thread fed by a bounded queue: a slow or dead SIEM
never holds a request (the alert is already in the database and the log when it is queued).
Alerts carry identifiers and counts only, never patient content (see `rempart.alerts`).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import queue
import threading
import urllib.request
from typing import Any

from sqlalchemy import Engine

from rempart.alerts import raise_alert
from rempart.clock import micros_to_iso, now_micros
from rempart.guard.settings import GuardConfig

log = logging.getLogger("rempart.guard")
QUEUE_SIZE = 1_000


class Notifier:
    def __init__(self, engine: Engine, config: GuardConfig) -> None:
        self._engine = engine
        self._config = config
        self._syslog: logging.handlers.SysLogHandler | None = None
        if config.syslog:
            address: str | tuple[str, int] = config.syslog
            if ":" in config.syslog and not config.syslog.startswith("/"):
                host, _, port = config.syslog.rpartition(":")
                address = (host, int(port))
            self._syslog = logging.handlers.SysLogHandler(
                address=address, facility=logging.handlers.SysLogHandler.LOG_AUTH
            )
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=QUEUE_SIZE)
        self._thread: threading.Thread | None = None
        if config.webhook_url:
            self._thread = threading.Thread(
                target=self._post_loop, name="guard-webhook", daemon=True
            )
            self._thread.start()

    def alert(self, kind: str, severity: str, message: str, details: dict[str, Any]) -> None:
        raise_alert(self._engine, kind, severity, message, details)
        doc = {
            "event": "rempart_guard_alert",
            "kind": kind,
            "severity": severity,
            "message": message,
            "details": details,
            "at": micros_to_iso(now_micros()),
        }
        if self._syslog is not None:
            text = "rempart-guard " + json.dumps(doc, sort_keys=True)
            try:
                self._syslog.emit(logging.makeLogRecord({"msg": text, "levelno": logging.WARNING}))
            except OSError as exc:  # pragma: no cover - the handler reports its own errors
                log.error("guard syslog target refused an alert: %s", exc)
        if self._thread is not None:
            try:
                self._queue.put_nowait(doc)
            except queue.Full:
                log.error("guard webhook is not keeping up; alert %s not sent to it", kind)

    def _post_loop(self) -> None:
        url = self._config.webhook_url or ""
        while (doc := self._queue.get()) is not None:
            request = urllib.request.Request(  # noqa: S310  (the URL is operator configuration)
                url,
                data=json.dumps(doc).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            try:
                with urllib.request.urlopen(  # noqa: S310
                    request, timeout=self._config.webhook_timeout_seconds
                ):
                    pass
            except OSError as exc:
                log.error("guard webhook %s refused an alert: %s", url, exc)

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=self._config.webhook_timeout_seconds)
        if self._syslog is not None:
            self._syslog.close()
