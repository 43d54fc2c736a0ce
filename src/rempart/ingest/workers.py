"""Worker processes for `seed` and `import`: the CPU-bound half of bulk ingest on every core.

The writing process keeps the database connection and the data keys; workers generate
and `prepare` (JSON, blind-index digests, care-relationship rows). Each worker gets the
search key once, when it starts (over the pipe that `multiprocessing` opens to a child of the
same command and user), and nothing else secret; it exits with the command.

`Lanes.map` runs one function over a sequence of argument tuples in worker processes, a bounded
number ahead of the consumer, and yields the results in order. Small jobs run in process:
starting a worker (a fresh interpreter importing the ingest code and the FHIR models) costs
about 1.5 s of CPU.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context
from types import TracebackType
from typing import Any, TypeVar

from rempart.crypto import BlindIndex
from rempart.fhir import validate
from rempart.seed import Hospital, generate
from rempart.store.ingest import Prepared, prepare

T = TypeVar("T")

# Jobs handed out ahead of the consumer, per worker: enough to keep every core busy while the
# writer commits, few enough to keep memory flat (a prepared batch of 250 patients is ~15 MB).
AHEAD_PER_WORKER = 2

# A worker process's state, set once by _start; jobs receive it as their first argument.
_STATE: dict[str, Any] = {}


class MemoBlindIndex(BlindIndex):
    """The blind index with a bounded memo of the digests it computed.

    Bulk loads repeat most tokens: codes, statuses, date buckets, references to the patient and
    to the directory. In a 250-patient batch of the seed 80% of the (type, param, token) triples
    were seen before, and an HMAC costs ten times a dict lookup. The memo holds what the worker
    holds anyway (the tokens of the resources it prepares, their digests) and lives as long as
    the worker; it is emptied when full rather than evicted entry by entry.
    """

    __slots__ = ("_held", "_memo")
    LIMIT = 1 << 18  # entries (~60 MB at most)

    def __init__(self, key: bytes) -> None:
        super().__init__(key)
        # By resource type, then by the (param, token) pair itself: the pairs `extract_pairs`
        # returns are the keys, so a hit builds no tuple.
        self._memo: dict[str, dict[tuple[str, str], bytes]] = {}
        self._held = 0

    def digest(self, resource_type: str, param: str, token: str) -> bytes:
        return self.digest_pairs(resource_type, ((param, token),))[0]

    def digest_pairs(self, resource_type: str, pairs: Iterable[tuple[str, str]]) -> list[bytes]:
        typed = self._memo.get(resource_type)
        if typed is None:
            typed = self._memo[resource_type] = {}
        compute = super().digest
        out: list[bytes] = []
        for pair in pairs:
            found = typed.get(pair)
            if found is None:
                if self._held >= self.LIMIT:
                    self._memo.clear()
                    self._held = 0
                    typed = self._memo[resource_type] = {}
                found = typed[pair] = compute(resource_type, *pair)
                self._held += 1
            out.append(found)
        return out


def _state(search_key: bytes, patients: int | None, seed: int | None) -> dict[str, Any]:
    state: dict[str, Any] = {"blind": MemoBlindIndex(search_key)}
    if patients is not None and seed is not None:
        state["hospital"] = generate(patients, seed)
    return state


def _start(search_key: bytes, patients: int | None, seed: int | None) -> None:
    _STATE.update(_state(search_key, patients, seed))


def _run(fn: Callable[..., T], *args: Any) -> T:
    return fn(_STATE, *args)


class Lanes:
    """A pool of `workers` processes, or none (`workers` = 0: everything runs in process)."""

    def __init__(
        self,
        search_key: bytes,
        *,
        workers: int,
        patients: int | None = None,
        seed: int | None = None,
    ) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._state: dict[str, Any] = {}
        if workers > 0:
            # Fresh interpreters, never forks of this process, which holds data keys and
            # database connections. (A fork server would save one worker's imports, ~1.5 s of
            # CPU, but its workers are not children of this command: their CPU time escapes
            # the command's own accounting, which the ingest benchmark relies on.)
            self._pool = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=get_context("spawn"),
                initializer=_start,
                initargs=(search_key, patients, seed),
            )
        else:
            self._state = _state(search_key, patients, seed)

    def __enter__(self) -> Lanes:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._state.clear()

    def warm(self) -> None:
        """Start every worker now (each imports the ingest code and the FHIR models), so that
        they are ready by the time the caller hands out its first jobs."""
        if self._pool is not None:
            for _ in range(self.workers):
                self._pool.submit(_run, _ready)

    def map(self, fn: Callable[..., T], jobs: Iterable[tuple[Any, ...]]) -> Iterator[T]:
        """fn(state, *job) for each job, in order. `jobs` is consumed lazily, one job as each is
        handed out, so a job may carry a value taken at that moment (the seed's timestamps)."""
        if self._pool is None:
            for job in jobs:
                yield fn(self._state, *job)
            return
        window = AHEAD_PER_WORKER * self.workers
        pending: deque[Future[T]] = deque()
        for job in jobs:
            pending.append(self._pool.submit(_run, fn, *job))
            if len(pending) > window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def default_workers(jobs: int) -> int:
    """Every core for two jobs or more (the writer mostly waits on the database); none for one."""
    return 0 if jobs <= 1 else max(1, os.cpu_count() or 1)


# ---- jobs (module-level functions: they are pickled by name) --------------------------------


def _ready(state: dict[str, Any]) -> None:
    del state


def prepare_chunk(state: dict[str, Any], resources: list[dict[str, Any]], stamp: int) -> Prepared:
    return prepare(resources, blind=state["blind"], stamp=stamp)


def prepare_patients(state: dict[str, Any], start: int, stop: int, stamp: int) -> Prepared:
    """Patients [start, stop) of the worker's hospital, generated and prepared.

    Generated resources are not validated one by one: the generator is deterministic code, and
    `tests/unit/seed/test_seed_validation.py` runs the server's validator on every resource of a
    seeded hospital. The first patient of each batch is still validated here, which costs 0.4%
    and stops a seed at its first batch if the generator ever drifts. `import` (data nobody here
    wrote) validates every resource.
    """
    hospital: Hospital = state["hospital"]
    resources: list[dict[str, Any]] = []
    for index in range(start, stop):
        generated = hospital.patient_resources(index)
        if index == start:
            for resource in generated:
                validate(resource)
        resources.extend(generated)
    return prepare(resources, blind=state["blind"], stamp=stamp)
