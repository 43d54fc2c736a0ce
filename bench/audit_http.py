"""The `http` scenario of bench_audit.py: a protected read over HTTP with and without its audit
record, in one run.

Two uvicorn processes (one worker each) serve one seeded home (SQLite, or a scratch PostgreSQL
database with `--backend postgresql`): "with" is the product;
"without" has its audit log replaced by a no-op sink in that process only (the guard, when
wired in front of the log, stays). One clinician token, `GET /fhir/Patient/{id}` rotating
over the patients that clinician may read, `wrk -t1 -cC`, the two servers loaded in turns
(with, without, with, ...), so that the machine's drifting load hits both alike. Server CPU
per request comes from /proc (the server process alone).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from bench_audit import load, without_audit
from bench_http import LUA, collect_paths, free_port, run_wrk
from bench_ingest import rempart

from rempart.config import load_settings
from rempart.wiring import open_services


def serve_for_bench(home: str, port: str, mode: str, url: str = "") -> None:
    """`bench_audit.py _serve HOME PORT with|without [URL]`: one uvicorn process on the app."""
    import uvicorn

    from rempart.api.app import create_app, settle_heap

    svc = open_services(load_settings(Path(home), url or None), pool_size=20)
    if mode.endswith("-bare"):  # nothing in front of the log: the audit's cost alone
        svc.records.audit = svc.audit
    if mode.startswith("without"):
        without_audit(svc)
    app = create_app(svc)
    settle_heap()  # as `rempart serve` does (api/app.py)
    uvicorn.run(app, host="127.0.0.1", port=int(port), log_level="warning")


def _post(base: str, path: str, body: dict[str, str]) -> dict[str, Any]:
    response = httpx.post(base + path, json=body, timeout=30)
    response.raise_for_status()
    doc: dict[str, Any] = response.json()
    return doc


def _clinician(base: str, credentials: Path) -> tuple[str, list[str]]:
    """A token of the clinician (among the last seeded) who reaches the most patients."""
    import pyotp

    accounts = json.loads(credentials.read_text())["accounts"]
    clinicians = [a for a in accounts if a["role"] == "clinician"][2:]  # tests log in the first
    best: tuple[str, list[str]] = ("", [])
    for acct in clinicians[-12:]:
        first = _post(
            base, "/auth/login", {"username": acct["username"], "password": acct["password"]}
        )
        code = pyotp.TOTP(acct["totp_secret"]).now()
        token = str(
            _post(base, "/auth/mfa", {"mfa_token": first["mfa_token"], "code": code})[
                "access_token"
            ]
        )
        paths = collect_paths(base, token, 400)["read"]
        if len(paths) > len(best[1]):
            best = (token, paths)
    if len(best[1]) < 3:
        raise RuntimeError("no clinician reaches 3 patients; seed more patients")
    return best


def _start(home: Path, mode: str, url: str | None) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).with_name("bench_audit.py")),
            "_serve",
            str(home),
            str(port),
            mode,
            url or "",
        ],
        start_new_session=True,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(base + "/fhir/metadata").status_code == 200:
                return proc, base
        time.sleep(0.2)
    raise RuntimeError(f"the {mode} server did not start")


def bench_http(
    patients: int,
    seconds: int,
    rounds: int,
    connections: int,
    *,
    bare: bool = False,
    window_ms: float | None = None,
    url: str | None = None,
) -> list[str]:
    """`bare`: also a pair of servers whose reads record straight into the log (no guard in
    front), so that the audit's own cost is measured apart from the guard's."""
    tmp = Path(tempfile.mkdtemp(prefix="rempart-bench-audit-http-"))
    home, creds = tmp / "home", tmp / "credentials.json"
    rempart(home, url, "seed", "--patients", str(patients), "--credentials-out", str(creds))
    if window_ms is not None:
        with (home / "config.toml").open("a") as fh:
            fh.write(f"\n[audit]\ncommit_window_ms = {window_ms}\n")
    servers: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    modes = ["with", "without"] + (["with-bare", "without-bare"] if bare else [])
    results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    try:
        for mode in modes:
            servers[mode] = _start(home, mode, url)
        token, paths = _clinician(servers["with"][1], creds)
        (tmp / "read.paths").write_text("\n".join(paths) + "\n")
        (tmp / "rotate.lua").write_text(LUA)
        started = load()
        for proc, base in servers.values():  # warm-up: pools, caches, code paths
            run_wrk(
                base, tmp / "rotate.lua", tmp / "read.paths", token, connections, 3, proc.pid, None
            )
        for _ in range(rounds):
            for mode, (proc, base) in servers.items():
                r = run_wrk(
                    base,
                    tmp / "rotate.lua",
                    tmp / "read.paths",
                    token,
                    connections,
                    seconds,
                    proc.pid,
                    None,
                )
                r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
                r["cpu_ms"] = 1000 * r["server_cpu"] / r["rps"]
                r["load"] = os.getloadavg()[0]
                results[mode].append(r)
                print(f"  {mode}: {json.dumps(r)}", file=sys.stderr, flush=True)
        ended = load()
    finally:
        for proc, _ in servers.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)
    lines = []
    backend = "SQLite" if url is None else "PostgreSQL"
    best = {m: max(rs, key=lambda r: r["rps"]) for m, rs in results.items()}
    cpu = {m: min(r["cpu_ms"] for r in rs) for m, rs in results.items()}
    errors = {m: sum(r["non2xx"] + r["socket_errors"] for r in rs) for m, rs in results.items()}
    for mode in modes:
        b = best[mode]
        lines.append(
            f"| GET /fhir/Patient/{{id}} over HTTP, {mode} audit, {backend}, 1 server process, wrk "
            f"-c{connections}, {len(paths)} patients | best {b['rps']:,.0f} req/s, p50 "
            f"{b['p50_us'] / 1000:.1f} ms, p99 {b['p99_us'] / 1000:.1f} ms | server CPU "
            f"{cpu[mode]:.2f} ms/req (min), server on {b['server_cpu']:.2f} cores | "
            f"errors {errors[mode]} | rounds: "
            + ", ".join(f"{r['rps']:,.0f}" for r in results[mode])
            + " | |"
        )
    for suffix in ("", "-bare") if bare else ("",):
        w, wo = f"with{suffix}", f"without{suffix}"
        lines.append(
            f"| ratio {w} / {wo} | throughput "
            f"**{best[w]['rps'] / best[wo]['rps']:.2f}**"
            f" | CPU per request **{cpu[w] / cpu[wo]:.2f}** | best of {rounds} x "
            f"{seconds} s each, interleaved | | {started} -> {ended} | |"
        )
    return lines
