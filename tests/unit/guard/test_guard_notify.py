"""Guard alerts reach the security officer's queue, the log line, and the configured webhook
(queued off the request path) and syslog; the `[guard]` table rejects thresholds."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from rempart.alerts import list_alerts
from rempart.guard.notify import Notifier
from rempart.guard.settings import GuardConfig, load_guard_config
from rempart.wiring import Services


def test_an_alert_goes_to_the_queue_the_webhook_and_syslog(services: Services) -> None:
    received: list[dict[str, object]] = []
    done = threading.Event()

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(204)
            self.end_headers()
            done.set()

        def log_message(self, *_args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    syslog = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    syslog.bind(("127.0.0.1", 0))
    syslog.settimeout(5)
    config = GuardConfig(
        webhook_url=f"http://127.0.0.1:{server.server_port}/alerts",
        webhook_timeout_seconds=2,
        syslog=f"127.0.0.1:{syslog.getsockname()[1]}",
    )
    notifier = Notifier(services.engine, config)
    try:
        notifier.alert(
            "guard-session-velocity",
            "critical",
            "account dr.x read 31 distinct patients in 5 min; clinician threshold 30",
            {"account_id": "acc-1", "count": 31, "threshold": 30},
        )
        assert done.wait(5)
        line = syslog.recv(4096).decode()
    finally:
        notifier.close()
        server.shutdown()
        server.server_close()
        syslog.close()
    assert received[0]["kind"] == "guard-session-velocity"
    assert received[0]["details"] == {"account_id": "acc-1", "count": 31, "threshold": 30}
    assert "rempart-guard" in line
    assert "guard-session-velocity" in line
    (stored,) = list_alerts(services.engine, kind="guard-session-velocity")
    assert stored.details["count"] == 31


def test_a_dead_webhook_never_holds_the_request(services: Services) -> None:
    config = GuardConfig(webhook_url="http://127.0.0.1:9/nothing", webhook_timeout_seconds=0.5)
    notifier = Notifier(services.engine, config)
    try:
        for _ in range(5):
            notifier.alert("guard-denials", "critical", "refused 11 times", {"count": 11})
    finally:
        notifier.close()
    assert len(list_alerts(services.engine, kind="guard-denials")) == 5


def test_the_config_table_holds_targets_not_thresholds(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        '[guard]\ntimezone = "Europe/Paris"\nwebhook_url = "https://siem.example/x"\n'
    )
    config = load_guard_config(tmp_path)
    assert config.timezone == "Europe/Paris"
    assert config.webhook_url == "https://siem.example/x"
    (tmp_path / "config.toml").write_text("[guard]\ndenials_short = 100000\n")
    with pytest.raises(ValueError, match="guard-settings request"):
        load_guard_config(tmp_path)
    (tmp_path / "config.toml").write_text('[guard]\ntimezone = "Mars/Olympus"\n')
    with pytest.raises(ValueError, match="unknown"):
        load_guard_config(tmp_path)
