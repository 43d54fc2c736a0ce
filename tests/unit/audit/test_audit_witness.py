"""Signed heads leave the database: the heads file, a syslog witness, an HTTP witness."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from tests.unit.audit.conftest import make_record

from rempart.audit.heads import HeadVerifier, HttpWitness, SignedHead, SyslogWitness
from rempart.wiring import Services


def test_heads_reach_syslog_and_http_witnesses(services: Services) -> None:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(5)
    http = HttpWitness(f"http://127.0.0.1:{server.server_address[1]}/heads")
    syslog = SyslogWitness(f"127.0.0.1:{udp.getsockname()[1]}")
    services.audit._heads.witnesses.extend([http, syslog])
    try:
        services.audit.record(make_record(0), make_record(1))
        head = services.audit.sign_now()
        assert head is not None
        line = udp.recv(4096).decode().rstrip("\x00")
        deadline = time.monotonic() + 5
        while not received and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        http.close()
        syslog.close()
        services.audit._heads.witnesses.clear()
        server.shutdown()
        server.server_close()
        udp.close()
    verifier = HeadVerifier(services.audit.signer.public)
    from_http = SignedHead.from_json(received[0])
    from_syslog = SignedHead.from_json(json.loads(line.split("rempart-audit-head ", 1)[1]))
    assert from_http == from_syslog == head
    assert verifier.head_valid(from_http)
    file_heads, bad = services.audit.heads_file.read()
    assert file_heads[-1] == head
    assert not bad
