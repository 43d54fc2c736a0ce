"""A fresh hospital in a temporary directory, served by a real uvicorn server in this process.

In-process on purpose: the simulated clock (`rempart.clock.SimulatedTime`) is a variable of this
process, and the server must read the same clock as the people it serves. The server still
listens on a TCP port of 127.0.0.1 and every request goes through HTTP, its parsing, its
middleware and its thread pool, exactly as for any client.
"""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from rempart.api.app import create_app
from rempart.bootstrap import initialise
from rempart.config import CONFIG_FILE, Settings, load_settings
from rempart.ingest.seeding import seed_hospital
from rempart.wiring import Services, open_services


@dataclass(frozen=True)
class LiveHospital:
    home: Path
    settings: Settings
    services: Services
    url: str
    credentials: Path
    seed_seconds: float


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# OWASP's floor for Argon2id (`identity.argon2`, the lowest a deployment may configure).
FLOOR_HASHING = "\n[identity.argon2]\nmemory_kib = 19456\ntime_cost = 2\nparallelism = 1\n"


@contextmanager
def live_hospital(
    patients: int,
    seed: int,
    progress: Callable[[int], None] | None = None,
    *,
    floor_hashing: bool = False,
) -> Iterator[LiveHospital]:
    """`floor_hashing`: passwords hashed at OWASP's floor instead of the default cost, for long
    runs of normal traffic where a sign-in's Argon2id (~0.2 s of CPU) would be half the run's
    CPU; nothing the guard sees depends on it."""
    with tempfile.TemporaryDirectory(prefix="rempart-simulate-") as tmp:
        home = Path(tmp) / "home"
        initialise(load_settings(home, None), profile="demo")
        if floor_hashing:
            with (home / CONFIG_FILE).open("a", encoding="utf-8") as fh:
                fh.write(FLOOR_HASHING)
        settings = load_settings(home, None)
        credentials = home / "credentials.json"
        started = time.monotonic()
        services = open_services(settings, pool_size=8)
        try:
            seed_hospital(
                services,
                patients=patients,
                seed=seed,
                credentials_out=credentials,
                progress=progress,
            )
        except BaseException:
            services.close()
            raise
        seeded = time.monotonic() - started
        with _serve(services) as url:  # the app's lifespan closes the services
            yield LiveHospital(home, settings, services, url, credentials, seeded)


@contextmanager
def _serve(services: Services) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(services),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
        )
    )
    thread = threading.Thread(target=server.run, name="rempart-simulated-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            raise RuntimeError("the simulated hospital's server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
