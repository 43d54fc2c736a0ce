"""Same (patients, seed) -> byte-identical output, whatever the order or the process."""

import hashlib
import json
import os
import subprocess
import sys
from datetime import date

import pytest

from rempart.seed import generate

PATIENTS = 120


def dump(resources: object) -> bytes:
    return json.dumps(resources, ensure_ascii=False, sort_keys=False).encode()


def test_two_runs_are_identical() -> None:
    first, second = generate(PATIENTS, seed=3), generate(PATIENTS, seed=3)
    assert dump(first.directory()) == dump(second.directory())
    assert dump(list(first.patient_batches(50))) == dump(list(second.patient_batches(50)))
    assert first.accounts == second.accounts
    assert first.decoy_patient_ids() == second.decoy_patient_ids()


def test_batches_do_not_depend_on_order_or_size() -> None:
    hospital = generate(PATIENTS, seed=3)
    whole = [r for batch in hospital.patient_batches(PATIENTS) for r in batch]
    # Generate the last batch first, then the others, in a fresh instance.
    other = generate(PATIENTS, seed=3)
    backwards = [other.patient_resources(i) for i in reversed(range(PATIENTS))]
    assert dump([r for rs in reversed(backwards) for r in rs]) == dump(whole)
    small = [r for batch in hospital.patient_batches(7) for r in batch]
    assert dump(small) == dump(whole)


def test_start_stop_select_a_contiguous_range() -> None:
    hospital = generate(PATIENTS, seed=3)
    middle = [r for batch in hospital.patient_batches(10, start=40, stop=60) for r in batch]
    expected = [r for i in range(40, 60) for r in hospital.patient_resources(i)]
    assert dump(middle) == dump(expected)
    assert sum(r["resourceType"] == "Patient" for r in middle) == 20
    assert list(hospital.patient_batches(10, start=PATIENTS)) == []
    with pytest.raises(ValueError, match="batch_size"):
        next(hospital.patient_batches(0))


def test_seed_and_reference_date_change_the_output() -> None:
    base = generate(20, seed=1).patient_resources(0)
    assert dump(generate(20, seed=2).patient_resources(0)) != dump(base)
    later = generate(20, seed=1, as_of=date(2027, 6, 1)).patient_resources(0)
    assert dump(later) != dump(base)


def test_caller_cannot_corrupt_the_directory() -> None:
    hospital = generate(10, seed=1)
    hospital.directory()[0]["name"] = "tampered"
    assert hospital.directory()[0]["name"] != "tampered"


_DIGEST = (
    "import hashlib, json; from rempart.seed import generate; h = generate(40, seed=5); "
    "data = [h.directory(), list(h.patient_batches(13)), [a.password for a in h.accounts]]; "
    "print(hashlib.sha256(json.dumps(data).encode()).hexdigest())"
)


def test_output_is_the_same_in_other_processes() -> None:
    # Parallel ingest workers must agree, whatever their hash randomisation.
    digests = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-c", _DIGEST], env=env, capture_output=True, text=True, check=True
        )
        digests.add(out.stdout.strip())
    hospital = generate(40, seed=5)
    data = [
        hospital.directory(),
        list(hospital.patient_batches(13)),
        [a.password for a in hospital.accounts],
    ]
    digests.add(hashlib.sha256(json.dumps(data).encode()).hexdigest())
    assert len(digests) == 1
