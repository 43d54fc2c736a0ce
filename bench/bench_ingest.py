"""Ingest benchmark: `rempart seed` and `rempart import`, on SQLite and PostgreSQL.

Each timed run is the real command in a fresh process, data directory and (PostgreSQL) scratch
database, dropped afterwards; rates are end to end, Argon2id of the staff accounts included. The
machine is shared: each size runs `--repeat` times, the best is kept. `--profile N` also seeds N
patients in process with timers around each stage of the seed path, once per backend, then once
under cProfile (top functions by own time).

    .venv/bin/python bench/bench_ingest.py                      # 2,000 patients + Synthea, both DBs
    .venv/bin/python bench/bench_ingest.py --patients 5000 20000 --repeat 1 --no-import
    .venv/bin/python bench/bench_ingest.py --patients --no-import --import-patients 5000
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import platform
import pstats
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# `python -m rempart.cli` rather than .venv/bin/rempart, so PYTHONPATH=<a checkout>/src benchmarks
# that checkout (a fixed commit) with this venv, while others edit the working tree.
REMPART_CMD = [sys.executable, "-m", "rempart.cli"]
FIXTURE = REPO.parent / "shared" / "fixtures" / "synthea-10-patients"
PG_SERVER = os.environ.get("REMPART_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
SEEDED = re.compile(r"seeded (\d+) patients, (\d+) resources, (\d+) accounts")


# ---- machine and databases (bench_http.py uses these too) -----------------------------------


def code_under_test() -> str:
    import rempart

    src = Path(rempart.__file__).resolve().parent.parent
    git = ["git", "-C", str(src), "rev-parse", "--short", "HEAD"]
    head = subprocess.run(git, capture_output=True, text=True, check=False).stdout.strip()
    return f"{src} ({head or 'not a git checkout'})"


def machine_facts() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"nproc={os.cpu_count()}, CPU {cpu}, memory {mem}, Python {platform.python_version()}, "
        f"load average at start {load}"
    )


def pg_available() -> bool:
    try:
        import psycopg

        psycopg.connect(PG_SERVER, connect_timeout=3).close()
    except Exception:
        return False
    return True


@contextlib.contextmanager
def scratch_database(backend: str, home: Path) -> Iterator[str | None]:
    """None for SQLite (the file in `home`), else the URL of a fresh PostgreSQL database that is
    dropped on exit, whatever happens."""
    if backend == "sqlite":
        yield None
        return
    import psycopg

    name = f"rempart_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_SERVER, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_SERVER.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_SERVER, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_bytes(home: Path, url: str | None) -> int:
    if url is None:
        return sum(p.stat().st_size for p in home.glob("rempart.sqlite3*"))
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return int(row[0]) if row else 0


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def rempart(home: Path, url: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [*REMPART_CMD, "--home", str(home)]
    if url is not None:
        cmd += ["--database", url]
    done = subprocess.run([*cmd, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}")
    return done


# ---- timed command-line runs ----------------------------------------------------------------


@dataclass
class Run:
    what: str
    backend: str
    patients: int
    resources: int
    seconds: float
    db_bytes: int
    peak_rss: int = 0  # bytes, the largest child process so far (ru_maxrss)
    cpu: float = 0.0  # CPU seconds (user + system) of the command and its worker processes
    server_cpu: float = 0.0  # CPU seconds of the PostgreSQL backends serving it (0 on SQLite)

    @property
    def rate(self) -> float:
        return self.resources / self.seconds

    def row(self) -> str:
        """Seven columns (what, backend, patients, resources, seconds, resources/s, size): other
        benchmarks print this row under their own header, so it keeps its shape."""
        return (
            f"| {self.what} | {self.backend} | {self.patients:,} | {self.resources:,} | "
            f"{self.seconds:,.1f} | {self.rate:,.0f} | {self.db_bytes / 2**20:,.0f} MiB |"
        )

    def full_row(self) -> str:
        """row() plus peak RSS, CPU seconds (the command with its workers, and the PostgreSQL
        server's) and resources per CPU second of all of them: the rate that a busy shared
        machine distorts least, and 2 x that is what 2 free cores would sustain at best."""
        total = self.cpu + self.server_cpu
        per_cpu = self.resources / total if total else 0
        return (
            f"{self.row()} {self.peak_rss / 2**20:,.0f} MiB | {self.cpu:,.1f} | "
            f"{self.server_cpu:,.1f} | {per_cpu:,.0f} |"
        )


def peak_rss() -> int:
    """Peak resident memory of the largest child so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


class ServerCpu:
    """CPU time of the PostgreSQL backends connected to one database, sampled from /proc while
    a command runs (a backend's time is lost once it exits, so sample often). Nothing on
    SQLite, whose work is inside the command's own process."""

    def __init__(self, url: str | None, every: float = 0.25) -> None:
        self._db = url.rsplit("/", 1)[1] if url else None
        self._seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._every = every
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ServerCpu:
        if self._db is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    @property
    def seconds(self) -> float:
        return sum(self._seen.values())

    def _run(self) -> None:
        import psycopg

        tick = os.sysconf("SC_CLK_TCK")
        with psycopg.connect(PG_SERVER, autocommit=True) as admin:
            while True:
                rows = admin.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s", (self._db,)
                ).fetchall()
                for (pid,) in rows:
                    with contextlib.suppress(OSError, IndexError, ValueError):
                        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                        self._seen[pid] = (int(fields[11]) + int(fields[12])) / tick
                if self._stop.wait(self._every):
                    return


def count_resources(home: Path, url: str | None) -> int:
    """Rows committed so far in `resource` (read beside the running seed)."""
    query = "SELECT count(*) FROM resource"
    if url is None:
        import sqlite3

        with contextlib.closing(sqlite3.connect(home / "rempart.sqlite3", timeout=30)) as db:
            return int(db.execute(query).fetchone()[0])
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


def sample_progress(
    home: Path, url: str | None, every: float, start: float, stop: threading.Event
) -> None:
    """Prints (elapsed, resources, size, rate over the last interval) while a seed runs, to
    show whether the rate falls as the tables grow."""
    last_t, last_n = 0.0, 0
    while not stop.wait(every):
        with contextlib.suppress(Exception):  # schema not there yet, database busy...
            n, t = count_resources(home, url), time.perf_counter() - start
            size = database_bytes(home, url) / 2**20
            rate = (n - last_n) / (t - last_t)
            print(
                f"  sample t={t:,.0f}s resources={n:,} db={size:,.0f}MiB rate={rate:,.0f}/s",
                file=sys.stderr,
                flush=True,
            )
            last_t, last_n = t, n


def seed_run(backend: str, patients: int, sample: float = 0) -> Run:
    home = Path(tempfile.mkdtemp(prefix="rempart-bench-"))
    try:
        with scratch_database(backend, home) as url:
            stop = threading.Event()
            cpu0, start = children_cpu(), time.perf_counter()
            if sample:
                args = (home, url, sample, start, stop)
                threading.Thread(target=sample_progress, args=args, daemon=True).start()
            try:
                with ServerCpu(url) as server:
                    done = rempart(home, url, "seed", "--patients", str(patients), "--seed", "0")
            finally:
                stop.set()
            seconds = time.perf_counter() - start
            match = SEEDED.search(done.stderr.replace("\n", " "))
            if match is None:
                raise RuntimeError(f"unexpected seed output: {done.stderr[-500:]}")
            cpu = children_cpu() - cpu0
            size = database_bytes(home, url)
            resources = int(match[2])
            run = Run("seed", backend, patients, resources, seconds, size, peak_rss(), cpu)
            run.server_cpu = server.seconds
            return run
    finally:
        shutil.rmtree(home, ignore_errors=True)


def synthetic_ndjson(patients: int, folder: Path) -> Path:
    """A synthetic hospital of `patients` (the seed's generator, seed 0) as one NDJSON file:
    data nobody here stored, for the import's rate at a size where its start-up does not
    count (the Synthea fixture imports in seconds, most of them start-up)."""
    from rempart.seed import generate

    hospital = generate(patients, 0)
    path = folder / f"hospital-{patients}.ndjson"
    with path.open("w") as out:
        for resource in hospital.directory():
            out.write(json.dumps(resource) + "\n")
        for index in range(patients):
            for resource in hospital.patient_resources(index):
                out.write(json.dumps(resource) + "\n")
    return path


def import_run(backend: str, source: Path = FIXTURE) -> Run:
    home = Path(tempfile.mkdtemp(prefix="rempart-bench-"))
    try:
        with scratch_database(backend, home) as url:
            rempart(home, url, "init")  # schema and key file: not part of the import
            cpu0, start = children_cpu(), time.perf_counter()
            with ServerCpu(url) as server:
                done = rempart(home, url, "import", str(source))
            seconds = time.perf_counter() - start
            imported = json.loads(done.stdout)["imported"]
            patients = int(imported.get("Patient", 0))
            total = sum(imported.values())
            cpu = children_cpu() - cpu0
            size = database_bytes(home, url)
            run = Run("import", backend, patients, total, seconds, size, peak_rss(), cpu)
            run.server_cpu = server.seconds
            return run
    finally:
        shutil.rmtree(home, ignore_errors=True)


def best_of(repeat: int, make: Callable[[], Run]) -> Run:
    runs = [make() for _ in range(repeat)]
    for run in runs:
        print(f"  {run.what} {run.backend} {run.patients}: {run.seconds:.1f} s", file=sys.stderr)
    return min(runs, key=lambda r: r.seconds)


# ---- in-process stage timers ----------------------------------------------------------------

# Stages of the writing process (the seed's main process). Generation, blind indexes and care
# links run in worker processes (`ingest/workers.py`): their CPU is reported beside the table,
# and the writer's time waiting for them is what the top-level rows leave of the wall time.
STAGES = [
    ("hospital set-up (pools, directory, accounts)", "rempart.ingest.seeding:generate"),
    ("directory (ingest_batch)", "rempart.ingest.seeding:ingest_batch"),
    ("write batches (write_prepared)", "rempart.ingest.seeding:write_prepared"),
    ("  data keys (select + create + wrap)", "rempart.store.keyring:Keyring.create_many"),
    ("  sealing (AES-256-GCM)", "rempart.store.ingest:seal_with"),
    ("  resource + version rows", "rempart.store.ingest:bulk_insert"),
    (
        "  index rows, staged packed (PostgreSQL: and unpacked)",
        "rempart.store.indexstage:IndexStage.add",
    ),
    ("  care links", "rempart.access.relations:write_rows"),
    ("commit", "sqlalchemy.engine.base:Transaction.commit"),
    (
        "index merge (SQLite: sorted slices; PostgreSQL: key build)",
        "rempart.store.indexstage:IndexStage.merge",
    ),
    (
        "accounts (waiting for the Argon2id hashes begun at the start; inserts)",
        "rempart.ingest.seeding:_Accounts.finish",
    ),
    ("statistics (ANALYZE)", "rempart.ingest.seeding:refresh_statistics"),
]


@contextlib.contextmanager
def stage_timers() -> Iterator[dict[str, float]]:
    """Wraps each STAGES function with a wall-clock accumulator. Only the outermost call of a
    function counts; stages may nest (SQL inside `create_many` is in both of those rows)."""
    import importlib

    totals = dict.fromkeys((name for name, _ in STAGES), 0.0)
    cpu = dict.fromkeys((f"{name} cpu" for name, _ in STAGES), 0.0)
    undo: list[tuple[Any, str, Any]] = []
    for name, target in STAGES:
        module_name, _, attr = target.partition(":")
        owner: Any = importlib.import_module(module_name)
        *path, leaf = attr.split(".")
        for part in path:
            owner = getattr(owner, part)
        original = getattr(owner, leaf)
        busy = [False]

        def timed(
            *args: Any, _f: Any = original, _n: str = name, _b: list[bool] = busy, **kw: Any
        ) -> Any:
            if _b[0]:
                return _f(*args, **kw)
            _b[0] = True
            start, start_cpu = time.perf_counter(), time.thread_time()
            try:
                return _f(*args, **kw)
            finally:
                totals[_n] += time.perf_counter() - start
                cpu[f"{_n} cpu"] += time.thread_time() - start_cpu
                _b[0] = False

        setattr(owner, leaf, timed)
        undo.append((owner, leaf, original))
    try:
        yield totals
    finally:
        totals.update(cpu)
        for owner, leaf, original in reversed(undo):
            setattr(owner, leaf, original)


def in_process_seed(
    backend: str, patients: int, profiler: cProfile.Profile | None
) -> tuple[float, float, float]:
    """(wall seconds, this process's CPU seconds, worker processes' CPU seconds)."""
    from rempart.bootstrap import initialise
    from rempart.config import load_settings
    from rempart.ingest.seeding import seed_hospital
    from rempart.wiring import open_services

    home = Path(tempfile.mkdtemp(prefix="rempart-bench-"))
    try:
        with scratch_database(backend, home) as url:
            settings = load_settings(home, url)
            initialise(settings, profile="demo")
            services = open_services(load_settings(home, url))
            try:
                cpu, workers = time.process_time(), children_cpu()
                start = time.perf_counter()
                if profiler is not None:
                    profiler.enable()
                seed_hospital(services, patients=patients, seed=0, credentials_out=None)
                if profiler is not None:
                    profiler.disable()
                wall = time.perf_counter() - start
                return wall, time.process_time() - cpu, children_cpu() - workers
            finally:
                services.close()
    finally:
        shutil.rmtree(home, ignore_errors=True)


def profile_seed(backends: list[str], patients: int, top: int) -> None:
    for backend in backends:
        with stage_timers() as totals:
            wall, cpu, workers = in_process_seed(backend, patients, None)
        print(
            f"\n### Seed stages, {patients:,} patients, {backend} (in process: wall {wall:.1f} s, "
            f"writer CPU {cpu:.1f} s, worker processes' CPU {workers:.1f} s)\n"
        )
        print(
            "| stage (writing process) | seconds | share | main thread CPU s |\n"
            "|---|---:|---:|---:|"
        )
        accounted = 0.0
        for name, _ in STAGES:
            seconds, used = totals[name], totals[f"{name} cpu"]
            print(f"| {name} | {seconds:.2f} | {100 * seconds / wall:.0f}% | {used:.2f} |")
            if not name.startswith("  "):
                accounted += seconds
        other = wall - accounted
        print(
            f"| waiting for the workers, loop (derived) | {other:.2f} | "
            f"{100 * other / wall:.0f}% | |"
        )
    profiler = cProfile.Profile()
    wall, _, _ = in_process_seed(backends[0], patients, profiler)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    print(f"\n### cProfile, {patients:,} patients, {backends[0]}, top {top} by own time")
    print(f"(wall {wall:.1f} s under the profiler)\n\n```")
    print("\n".join(line for line in out.getvalue().splitlines() if line.strip()))
    print("```")


# ---- main -----------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--backends", default="sqlite,postgresql", help="comma-separated")
    ap.add_argument("--patients", type=int, nargs="*", default=[2000], help="seed sizes")
    ap.add_argument("--repeat", type=int, default=3, help="runs per size; the best is kept")
    ap.add_argument("--no-import", action="store_true", help="skip the Synthea import")
    ap.add_argument(
        "--profile", type=int, default=500, help="patients for the stage profile (0=off)"
    )
    ap.add_argument("--top", type=int, default=25, help="cProfile lines to print")
    ap.add_argument(
        "--sample", type=float, default=0, help="print seed progress every N seconds (0=off)"
    )
    ap.add_argument(
        "--import-patients",
        type=int,
        nargs="*",
        default=[],
        help="also import a synthetic hospital of N patients written as NDJSON",
    )
    args = ap.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    if "postgresql" in backends and not pg_available():
        print(f"PostgreSQL not reachable at {PG_SERVER}: SQLite only", file=sys.stderr)
        backends.remove("postgresql")
    print(f"machine: {machine_facts()}")
    print(f"code: {code_under_test()}")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}\n")
    print(
        "| command | backend | patients | resources | seconds | resources/s | database | "
        "peak RSS | CPU s (command + workers) | CPU s (PostgreSQL) | resources/CPU s |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for backend in backends:
        if not args.no_import:
            print(best_of(args.repeat, lambda b=backend: import_run(b)).full_row(), flush=True)
        for n in args.import_patients:
            with tempfile.TemporaryDirectory(prefix="rempart-bench-ndjson-") as folder:
                source = synthetic_ndjson(n, Path(folder))
                run = best_of(args.repeat, lambda b=backend, s=source: import_run(b, s))
                print(run.full_row(), flush=True)
        for n in args.patients:
            print(
                best_of(args.repeat, lambda b=backend, n=n: seed_run(b, n, args.sample)).full_row(),
                flush=True,
            )
    if args.profile:
        profile_seed(backends, args.profile, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
