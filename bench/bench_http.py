"""HTTP benchmark: a real `rempart serve --workers 2` on 127.0.0.1, driven by `wrk`.

Set-up (not timed): a fresh home (and scratch PostgreSQL database with --backend postgresql),
`rempart seed --patients N --credentials-out`, the server, one clinician logged in through the
API (`/auth/login`, then `/auth/mfa` with a pyotp code from the credentials file), and the
request paths collected through the API (patient ids, their encounters, family-name prefixes).

Scenarios, each rotating over many paths so no single row or key stays hot:
- `metadata`: unauthenticated `GET /fhir/metadata`, the framework ceiling on this machine;
- `read`: `GET /fhir/Patient/{id}` with the bearer token;
- `encounters`: `GET /fhir/Encounter?patient={id}`;
- `family`: `GET /fhir/Patient?family={3-letter prefix}`.

The load generator shares the 2 cores. `wrk -t1` is one C thread (far cheaper per request than a
Python client); its CPU time, the server processes' CPU time and the whole machine's busy time
(and, on PostgreSQL, the CPU of the backends serving the scratch database) are read from /proc
around each run, so "CPU ms/req" gives the ceiling the server would reach with both cores.
Each point is the best of `--repeat`.

    apt-get install -y wrk
    .venv/bin/python bench/bench_http.py                    # SQLite, 2,000 patients
    .venv/bin/python bench/bench_http.py --backend postgresql --connections 16 64
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pyotp
from bench_ingest import (
    REMPART_CMD,
    code_under_test,
    machine_facts,
    pg_available,
    rempart,
    scratch_database,
)

LUA = r"""
local paths = {}
for line in io.lines(os.getenv("BENCH_PATHS")) do paths[#paths + 1] = line end
local token = os.getenv("BENCH_TOKEN")
if token ~= nil and token ~= "" then wrk.headers["Authorization"] = "Bearer " .. token end
-- BENCH_TOKENS: a file of bearer tokens (sessions), one per request in turn
local tokens = {}
local token_file = os.getenv("BENCH_TOKENS")
if token_file ~= nil and token_file ~= "" then
  for line in io.lines(token_file) do tokens[#tokens + 1] = line end
end
local i = 0
request = function()
  i = i % #paths + 1
  if #tokens > 0 then
    local auth = {["Authorization"] = "Bearer " .. tokens[i % #tokens + 1]}
    return wrk.format("GET", paths[i], auth)
  end
  return wrk.format("GET", paths[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "non2xx": %d, "socket_errors": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---- CPU accounting from /proc --------------------------------------------------------------


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of a process, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK


def tree_cpu(root: int) -> float:
    """CPU seconds used so far by `root` and all its descendants (uvicorn master + workers)."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) is not None:
            stats[int(entry)] = st
    family, total, grew = {root}, 0.0, True
    while grew:
        grew = False
        for pid, (ppid, _) in stats.items():
            if ppid in family and pid not in family:
                family.add(pid)
                grew = True
    for pid in family:
        if pid in stats:
            total += stats[pid][1]
    return total


def pg_cpu(dbname: str | None) -> float:
    """CPU seconds of the PostgreSQL backends serving `dbname` (their title names the
    database), so the database's share of a request is counted, and other users' is not."""
    if dbname is None:
        return 0.0
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            title = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if title.startswith(b"postgres:") and f" {dbname} ".encode() in title:
            total += (_stat(int(entry)) or (0, 0.0))[1]
    return total


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


# ---- server lifecycle -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server(
    home: Path, url: str | None, port: int, workers: int
) -> Iterator[subprocess.Popen[bytes]]:
    cmd = [*REMPART_CMD, "--home", str(home)]
    if url is not None:
        cmd += ["--database", url]
    cmd += ["serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    # Its own process group, so stopping it stops its workers and nothing else.
    proc = subprocess.Popen(cmd, start_new_session=True, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/fhir/metadata").status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.3)
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def login(base: str, credentials: Path, role: str = "clinician") -> str:
    """A session of the busiest of the last ten clinicians (the functional tests' dedicated
    login accounts are the first ones): the one with the most patients in scope."""
    accounts = [a for a in json.loads(credentials.read_text())["accounts"] if a["role"] == role]
    best: tuple[int, str] | None = None
    for acct in accounts[-10:]:
        token = login_as(base, acct)
        total = httpx.get(
            f"{base}/fhir/Patient",
            params={"_count": "0"},
            headers={"Authorization": f"Bearer {token}"},
        ).json()["total"]
        if best is None or total > best[0]:
            best = (total, token)
    assert best is not None, "no clinician in the credentials file"
    return best[1]


def login_as(base: str, acct: dict[str, Any]) -> str:
    with httpx.Client(base_url=base) as client:
        step1 = client.post(
            "/auth/login", json={"username": acct["username"], "password": acct["password"]}
        )
        step1.raise_for_status()
        code = pyotp.TOTP(acct["totp_secret"]).now()
        step2 = client.post(
            "/auth/mfa", json={"mfa_token": step1.json()["mfa_token"], "code": code}
        )
        step2.raise_for_status()
        return str(step2.json()["access_token"])


def collect_paths(base: str, token: str, limit: int) -> dict[str, list[str]]:
    """Request paths per scenario, found through the API as a client would."""
    ids: list[str] = []
    families: set[str] = set()
    headers = {"Authorization": f"Bearer {token}"}
    next_url: str | None = f"{base}/fhir/Patient?_count=200"
    with httpx.Client(headers=headers, timeout=60) as client:
        while next_url and len(ids) < limit:
            bundle = client.get(next_url).raise_for_status().json()
            for entry in bundle.get("entry", []):
                patient = entry["resource"]
                ids.append(patient["id"])
                family = (patient.get("name") or [{}])[0].get("family", "")
                if len(family) >= 3:
                    families.add(family[:3])
            links = {link["relation"]: link["url"] for link in bundle.get("link", [])}
            next_url = links.get("next")
    return {
        "metadata": ["/fhir/metadata"],
        "read": [f"/fhir/Patient/{i}" for i in ids],
        "encounters": [f"/fhir/Encounter?patient={i}" for i in ids],
        "family": [f"/fhir/Patient?family={quote(f)}" for f in sorted(families)],
    }


def more_sessions(home: Path, url: str | None, token: str, count: int) -> list[str]:
    """`count` sessions of the account behind `token`, `token` first. The others are opened
    in the database directly (a harness shortcut: a login through the API needs a TOTP code,
    and a code is accepted once, so a new session every 30 s): searches spread over several
    sessions, as a ward's clinicians make them, rather than one session searching dozens of
    times a second, which the guard's search-rate rule rightly treats as a scrape."""
    from sqlalchemy import select

    from rempart.clock import now_micros
    from rempart.config import load_settings
    from rempart.identity.tables import session
    from rempart.wiring import open_services

    services = open_services(load_settings(home, url), pool_size=1)
    try:
        who = services.identity.authenticate(token)
        tokens = [token]
        with services.engine.begin() as conn:
            factors = conn.execute(
                select(session.c.factors).where(session.c.id == who.session_id)
            ).scalar_one()
            for _ in range(count - 1):
                opened = services.identity.core.sessions.open(
                    conn,
                    account_id=who.account_id,
                    role=who.role,
                    factors=factors,
                    now=now_micros(),
                )
                tokens.append(opened.access_token)
        return tokens
    finally:
        services.close()


def guard_thresholds_raised(home: Path, url: str | None) -> None:
    """wrk replays one clinician's whole patient list in a loop: a scrape, which the guard
    contains within a minute. The thresholds go to their upper bounds (the guard still scores
    every request) so the figure is the cost of a protected read, not of a refusal."""
    from bench_guard import raise_thresholds

    from rempart.config import load_settings
    from rempart.wiring import open_services

    services = open_services(load_settings(home, url), pool_size=1)
    try:
        with services.engine.begin() as conn:
            raise_thresholds(conn)
    finally:
        services.close()


# ---- one wrk run ----------------------------------------------------------------------------


@dataclass
class Point:
    scenario: str
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    non2xx: int
    server_cpu: float  # cores used by the server processes during the run
    db_cpu: float  # cores used by the PostgreSQL backends of the scratch database
    wrk_cpu: float  # cores used by wrk
    busy: float  # cores busy on the whole machine (server, wrk, database, everyone else)

    @property
    def cpu_ms_per_request(self) -> float:
        return 1000 * (self.server_cpu + self.db_cpu) / self.rps if self.rps else 0.0

    def row(self) -> str:
        ceiling = 2000 / self.cpu_ms_per_request if self.rps else 0
        return (
            f"| {self.scenario} | {self.connections} | {self.rps:,.0f} | {self.p50_ms:.1f} | "
            f"{self.p99_ms:.1f} | {self.non2xx} | {self.server_cpu:.2f} | {self.db_cpu:.2f} | "
            f"{self.wrk_cpu:.2f} | "
            f"{self.busy:.2f} | {self.cpu_ms_per_request:.2f} | {ceiling:,.0f} |"
        )


def run_wrk(
    base: str,
    script: Path,
    paths: Path,
    token: str,
    connections: int,
    seconds: int,
    server: int,
    dbname: str | None,
    tokens: Path | None = None,
) -> dict[str, Any]:
    """`tokens`: a file of bearer tokens used in turn, one per request (`token` is then only
    the default header)."""
    env = {**os.environ, "BENCH_PATHS": str(paths), "BENCH_TOKEN": token}
    if tokens is not None:
        env["BENCH_TOKENS"] = str(tokens)
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script)]
    before_srv, before_db, before_busy = tree_cpu(server), pg_cpu(dbname), machine_busy()
    before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([*cmd, base], env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    after_srv, after_db, after_busy = tree_cpu(server), pg_cpu(dbname), machine_busy()
    line = next(x for x in done.stdout.splitlines() if x.startswith("BENCH "))
    result: dict[str, Any] = json.loads(line.removeprefix("BENCH "))
    wrk_cpu = (after_children.ru_utime + after_children.ru_stime) - (
        before_children.ru_utime + before_children.ru_stime
    )
    cores = os.cpu_count() or 1
    busy = (after_busy[0] - before_busy[0]) / (after_busy[1] - before_busy[1]) * cores
    result.update(
        server_cpu=(after_srv - before_srv) / wall,
        db_cpu=(after_db - before_db) / wall,
        wrk_cpu=wrk_cpu / wall,
        busy=busy,
    )
    return result


def measure(
    scenario: str,
    base: str,
    work: Path,
    token: str,
    paths: list[str],
    connections: int,
    args: argparse.Namespace,
    server_pid: int,
    dbname: str | None,
) -> Point:
    script, path_file = work / "rotate.lua", work / f"{scenario}.paths"
    script.write_text(LUA)
    path_file.write_text("\n".join(paths) + "\n")
    auth = "" if scenario == "metadata" else token
    check = httpx.get(base + paths[0], headers={"Authorization": f"Bearer {auth}"} if auth else {})
    if check.status_code != 200:
        raise RuntimeError(f"{scenario}: {paths[0]} answered {check.status_code}: {check.text}")
    tokens = work / "tokens" if auth and args.sessions > 1 else None
    warm = (base, script, path_file, auth, connections, 2, server_pid, dbname, tokens)
    run_wrk(*warm)  # warm caches and pools
    best: Point | None = None
    for _ in range(args.repeat):
        r = run_wrk(
            base, script, path_file, auth, connections, args.duration, server_pid, dbname, tokens
        )
        point = Point(
            scenario,
            connections,
            r["requests"] / (r["duration_us"] / 1e6),
            r["p50_us"] / 1000,
            r["p99_us"] / 1000,
            r["non2xx"] + r["socket_errors"],
            r["server_cpu"],
            r["db_cpu"],
            r["wrk_cpu"],
            r["busy"],
        )
        print(f"  {point.row()}", file=sys.stderr, flush=True)
        if best is None or point.rps > best.rps:
            best = point
    assert best is not None
    return best


# ---- main -----------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--patients", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--connections", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--duration", type=int, default=10, help="seconds per run")
    ap.add_argument("--repeat", type=int, default=3, help="runs per point; the best is kept")
    ap.add_argument("--ids", type=int, default=2000, help="distinct patients to rotate over")
    ap.add_argument("--scenarios", nargs="+", default=["metadata", "read", "encounters", "family"])
    ap.add_argument(
        "--sessions",
        type=int,
        default=1,
        help="sessions of the clinician the requests use in turn (more_sessions)",
    )
    ap.add_argument(
        "--home",
        type=Path,
        help="SQLite only: seed into DIR once and keep it; later runs reuse it (for iterating)",
    )
    args = ap.parse_args()
    if args.home is not None and args.backend != "sqlite":
        print("--home is for SQLite", file=sys.stderr)
        return 2
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2
    if args.backend == "postgresql" and not pg_available():
        print("PostgreSQL is not reachable; try --backend sqlite", file=sys.stderr)
        return 2
    print(f"machine: {machine_facts()}")
    print(f"code: {code_under_test()}")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    kept = args.home is not None
    home = args.home or Path(tempfile.mkdtemp(prefix="rempart-bench-http-"))
    try:
        with scratch_database(args.backend, home) as url:
            credentials = home / "credentials.json"
            if not credentials.exists():
                home.mkdir(parents=True, exist_ok=True)
                start = time.perf_counter()
                size = str(args.patients)
                out = str(credentials)
                rempart(home, url, "seed", "--patients", size, "--credentials-out", out)
                took = time.perf_counter() - start
                print(f"seeded {args.patients:,} patients on {args.backend} in {took:.0f} s")
                guard_thresholds_raised(home, url)
            else:
                print(f"reusing the hospital seeded in {home}")
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            with server(home, url, port, args.workers) as proc:
                token = login(base, credentials)
                all_paths = collect_paths(base, token, args.ids)
                if args.sessions > 1:
                    tokens = more_sessions(home, url, token, args.sessions)
                    (home / "tokens").write_text("\n".join(tokens) + "\n")
                print(
                    f"server: rempart serve --workers {args.workers}; load: wrk -t1, "
                    f"{args.duration} s per run, best of {args.repeat}; "
                    f"{len(all_paths['read'])} patient ids, {len(all_paths['family'])} prefixes\n"
                )
                print(
                    "| scenario | conns | req/s | p50 ms | p99 ms | errors | server cores | "
                    "db cores | wrk cores | busy cores | CPU ms/req | ceiling req/s (2 cores) |"
                )
                print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
                for scenario in args.scenarios:
                    for conns in args.connections:
                        point = measure(
                            scenario,
                            base,
                            home,
                            token,
                            all_paths[scenario],
                            conns,
                            args,
                            proc.pid,
                            None if url is None else url.rsplit("/", 1)[1],
                        )
                        print(point.row(), flush=True)
    finally:
        if not kept:
            shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
