"""Run every `bench/bench_*.py` in turn (what `make bench` calls).

Each benchmark runs with its own defaults in its own process; its report (Markdown) goes to
stdout and its progress to stderr, as it goes. One failing benchmark does not stop the others;
the exit status says whether all passed. Results are copied into docs/benchmarks.md by hand,
with the command and the machine (each script prints both).

    .venv/bin/python bench/run_all.py                   # all of them
    .venv/bin/python bench/run_all.py ingest http       # only bench_ingest.py and bench_http.py
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if argv:
        wanted = {f"bench_{name.removeprefix('bench_').removesuffix('.py')}.py" for name in argv}
        scripts = [s for s in scripts if s.name in wanted]
        missing = wanted - {s.name for s in scripts}
        if missing:
            print(f"no such benchmark: {', '.join(sorted(missing))}", file=sys.stderr)
            return 2
    failed: list[str] = []
    for script in scripts:
        print(f"\n## {script.name}\n", flush=True)
        start = time.perf_counter()
        code = subprocess.call([sys.executable, str(script)], cwd=HERE.parent)
        took = time.perf_counter() - start
        print(f"\n({script.name}: exit {code}, {took:.0f} s)", file=sys.stderr, flush=True)
        if code != 0:
            failed.append(script.name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"\nall {len(scripts)} benchmarks ran", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
