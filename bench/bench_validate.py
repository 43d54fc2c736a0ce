"""Validation benchmark: `validate()` as the server runs it, against the R4B model alone.

Every resource a client writes or a file imports goes through `rempart.fhir.validate`; since
`fastcheck`, what it can vouch for skips the model's own (slower) walk. Both paths run here on
the same resources, in process: a synthetic hospital (the seed's generator, written out as JSON
and read back, as an import would) and the Synthea sample when it is present.

    .venv/bin/python bench/bench_validate.py --patients 2000 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_ingest import machine_facts
from fhir.resources.R4B import get_fhir_model_class

from rempart.fhir import validate
from rempart.seed import generate

SYNTHEA = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "synthea-10-patients"

Resource = dict[str, Any]


def hospital(patients: int) -> list[Resource]:
    made = generate(patients, 0)
    resources = list(made.directory())
    for index in range(patients):
        resources += made.patient_resources(index)
    return [json.loads(json.dumps(r)) for r in resources]  # plain JSON, as a file would give


def synthea() -> list[Resource]:
    out: list[Resource] = []
    for path in sorted(SYNTHEA.glob("*.000.ndjson")):
        out += [
            json.loads(line) for line in path.read_text().splitlines() if '"resourceType"' in line
        ]
    return out


def model_only(resource: Resource) -> None:
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def timed(
    check: Callable[[Resource], object], resources: list[Resource], repeat: int
) -> tuple[float, dict[str, float]]:
    """Best of `repeat`: CPU µs per resource overall, and by type."""
    best = float("inf")
    by_type: dict[str, float] = {}
    for _ in range(repeat):
        spent: dict[str, float] = defaultdict(float)
        count: dict[str, int] = defaultdict(int)
        start = time.process_time()
        for resource in resources:
            t0 = time.process_time()
            check(resource)
            spent[resource["resourceType"]] += time.process_time() - t0
            count[resource["resourceType"]] += 1
        total = (time.process_time() - start) / len(resources) * 1e6
        if total < best:
            best = total
            by_type = {k: spent[k] / count[k] * 1e6 for k in spent}
    return best, by_type


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--patients", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3, help="passes per path; the best is kept")
    args = ap.parse_args()
    print(f"machine: {machine_facts()}")
    print("command: python " + " ".join(sys.argv))
    corpora = {f"seed hospital, {args.patients} patients": hospital(args.patients)}
    if SYNTHEA.is_dir():
        corpora["Synthea sample"] = synthea()
    else:
        print(f"(Synthea sample absent at {SYNTHEA}: skipped)")
    print("\n| resources | count | validate() µs CPU each | R4B model alone µs | ratio |")
    print("|---|---:|---:|---:|---:|")
    for name, resources in corpora.items():
        fast, fast_types = timed(validate, resources, args.repeat)
        slow, slow_types = timed(model_only, resources, args.repeat)
        print(f"| {name} | {len(resources):,} | {fast:.1f} | {slow:.1f} | {slow / fast:.1f}x |")
        for rtype in sorted(fast_types, key=lambda t: -slow_types[t]):
            fast_one, slow_one = fast_types[rtype], slow_types[rtype]
            ratio = slow_one / fast_one
            print(f"|   {rtype} | | {fast_one:.1f} | {slow_one:.1f} | {ratio:.1f}x |")


if __name__ == "__main__":
    main()
