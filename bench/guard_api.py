"""The guard's cost on a protected read as the API serves it, in process: `GET
/fhir/Patient/{id}` through the real ASGI application (routing, authentication, policy, store,
decryption, the guard, the durable audit record with its group commit), 16 requests in flight,
against the same application built by the harness on a `RecordService` without the guard (the
product has no switch). Only the socket and uvicorn's HTTP parsing are left out, which would add
the same to both.

Blocks of reads alternate between the two applications so both see the same machine load; each
block's CPU time of this process (request threads, event loop, audit and guard background
threads) is divided by its reads: a mean, which counts the background threads' batches fairly.
Used by `bench_guard.py --api`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import time
from typing import Any

from guard_probe import Probe

from rempart.api.app import create_app, settle_heap
from rempart.service.records import RecordService
from rempart.wiring import Services

CONCURRENT = 16
BLOCK = 400  # reads per block


async def _get(app: Any, path: str, token: str) -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {token}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(scope, receive, send)
    return status[0]


async def _block(app: Any, paths: list[str], tokens: list[str], first: bool, seen: Any) -> float:
    """CPU µs per read over one block; in-flight request i uses tokens[i % len(tokens)]."""
    queue = list(paths)

    async def worker(token: str) -> None:
        while queue:
            path = queue.pop()
            if first:  # every read a patient this session has not opened this minute
                with seen._lock:
                    seen._at.clear()
            status = await _get(app, path, token)
            assert status == 200, status

    cpu = time.process_time()
    await asyncio.gather(*(worker(tokens[i % len(tokens)]) for i in range(CONCURRENT)))
    return (time.process_time() - cpu) / len(paths) * 1e6


def measure_api(
    services: Services, patients: list[str], tokens: list[str], rounds: int
) -> list[str]:
    """`tokens`: one (one session with every request in flight: a single account at the
    server's full speed, the guard's worst case) or CONCURRENT (as many clinicians, one
    request in flight each)."""
    bare = RecordService(
        services.store, services.policy, services.audit, default_count=20, max_count=200
    )
    apps = {
        "guarded": create_app(services),
        "bare": create_app(dataclasses.replace(services, records=bare)),
    }
    seen = services.guard._seen
    probe = Probe()

    async def run() -> dict[tuple[str, bool], list[float]]:
        out: dict[tuple[str, bool], list[float]] = {}
        position = 0
        for first in (False, True):
            for _ in range(max(1, rounds // BLOCK)):
                for name, app in apps.items():
                    paths = [
                        f"/fhir/Patient/{patients[(position + i) % len(patients)]}"
                        for i in range(BLOCK)
                    ]
                    position += BLOCK
                    probe.on = first and name == "guarded"
                    out.setdefault((name, first), []).append(
                        await _block(app, paths, tokens, first, seen)
                    )
                    probe.on = False
        return out

    async def warm() -> None:
        for app in apps.values():
            for pid in patients[:100]:
                for token in tokens:
                    assert await _get(app, f"/fhir/Patient/{pid}", token) == 200

    asyncio.run(warm())
    settle_heap()  # the two applications' objects too, as the server's factory does
    with probe.installed():
        results = asyncio.run(run())
    lines = [
        f"Through the API in process ({CONCURRENT} in flight, "
        f"{'one session' if len(tokens) == 1 else f'{len(tokens)} sessions of as many accounts'}, "
        f"blocks of {BLOCK}, median of blocks' mean CPU per read):",
        "",
        "| access pattern | bare read (CPU) | guarded read (CPU) | guard's cost (CPU) |",
        "|---|---|---|---|",
    ]
    for first, label in ((False, "re-read (steady state)"), (True, "new patient each read")):
        b = statistics.median(results[("bare", first)])
        g = statistics.median(results[("guarded", first)])
        cost = f"**{(g - b) / b:+.1%}** ({g - b:,.0f} µs)"
        lines.append(f"| {label} | {b:,.0f} µs | {g:,.0f} µs | {cost} |")
    return lines + probe.lines()
