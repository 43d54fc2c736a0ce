"""fastcheck says "accepted" only where fhir.resources accepts: checked on thousands of mutants.

Each mutant is a real resource (the seed's hospital, the Synthea sample) with one to three
changes at random places: a value swapped for a hostile one or for another part of the same
resource, a key dropped or added, a scalar wrapped in a list or a list unwrapped, a null or an
empty value, a second choice of a choice element. Whenever fastcheck accepts a mutant, the R4B
model must accept it too; the test also checks that both verdicts occur often enough for the
comparison to mean something.
"""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.observation import Observation
from pydantic import ValidationError, model_validator

from rempart.errors import InvalidResource
from rempart.fhir import fastcheck
from rempart.fhir.params import SUPPORTED_TYPES
from rempart.fhir.validate import validate
from rempart.seed import generate

Resource = dict[str, Any]

# fmt: off
HOSTILE: list[object] = [
    None, "", " ", " x", "x ", "x  y", "a b", "\n", "\t", "x" * 100, "é€", "x\x00y",
    "2020", "2020-01", "2020-01-01", "2020-13-01", "2020-02-30", "2020-02-29", "2021-02-29",
    "2020-01-01T10:00:00", "2020-01-01T10:00:00+01:00", "2020-01-01T25:00:00+01:00",
    "2020-01-01T10:00:00.123Z", "2020-01-01 10:00:00", "10:61:00", "12:00:00", "24:00:00",
    0, 1, -1, 2**31, -(2**31) - 1, 2**40, 1.5, -0.0, 1e308, True, False,
    "true", "1", "01", "-1", "+1", "1.0", "1e5", "0x10", "urn:oid:1.2.3", "urn:oid:1.02",
    "http://x y", "http://example.org/fhir", "Patient/1", "#", "Patient/", "a" * 65,
    "aGVsbG8=", "not base64!", "male", "unknown", "final", "ok-code", "a\u00a0b",
    '<div xmlns="http://www.w3.org/1999/xhtml">x</div>', "<div>x</div>", "<p>x</p>",
    {}, [], [None], [1], ["x"], [{}], {"a": 1}, {"url": "x"}, {"value": "x"},
    {"reference": "Patient/1"}, {"system": "s", "code": "c"}, {"text": "x"},
    {"start": "2020-01-01"}, {"value": 1.5, "unit": "mg"}, [{"text": "x"}],
]
# fmt: on

PLAUSIBLE = [v for v in HOSTILE if v not in (None, "", [], {}, [None], [{}])]


def _paths(node: object, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*path, index))
    return found


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        node = node[step]
    return node


def _mutate(resource: Resource, rng: random.Random) -> None:
    paths = [p for p in _paths(resource) if p and p != ("resourceType",)]
    path = rng.choice(paths)
    parent, last = _get(resource, path[:-1]), path[-1]
    value = parent[last]
    move = rng.randrange(11)
    if move == 0:
        parent[last] = copy.deepcopy(rng.choice(HOSTILE))
    elif move >= 9:  # a hostile value of a plausible kind, which the quick path may take
        parent[last] = copy.deepcopy(rng.choice(PLAUSIBLE))
    elif move == 1:  # a value from elsewhere in the same resource: a type confusion
        parent[last] = copy.deepcopy(_get(resource, rng.choice(paths)))
    elif move == 2:
        del parent[last]
    elif move == 3 and isinstance(parent, dict):
        name = rng.choice(["foo", "_" + str(last), f"{last}__ext", "fhir_comments", "resourceType"])
        parent[name] = copy.deepcopy(rng.choice(HOSTILE))
    elif move == 4:
        parent[last] = [value]
    elif move == 5 and isinstance(value, list) and value:
        parent[last] = value[0]
    elif move == 6 and isinstance(value, list):
        value.insert(rng.randrange(len(value) + 1), None)
    elif move == 7 and isinstance(last, str) and _choice_stem(last) != last:
        # A second value for what may be a choice element: valueString beside valueQuantity.
        other = rng.choice(("String", "Boolean", "DateTime", "Period", "Integer", "Quantity"))
        parent[_choice_stem(last) + other] = copy.deepcopy(rng.choice([*HOSTILE, value]))
    else:
        parent[last] = type(value)() if isinstance(value, (dict, list, str)) else None


def _choice_stem(key: str) -> str:
    for index, char in enumerate(key):
        if char.isupper():
            return key[:index]
    return key


def _model_accepts(resource: Resource) -> bool:
    try:
        get_fhir_model_class(resource["resourceType"]).model_validate(copy.deepcopy(resource))
    except (ValidationError, TypeError, ValueError, KeyError, AttributeError):
        return False
    return True


def _differential(corpus: list[Resource], mutants: int, seed: int) -> tuple[int, int]:
    rng = random.Random(seed)
    fast_yes = model_no = 0
    for _ in range(mutants):
        mutant = copy.deepcopy(rng.choice(corpus))
        for _ in range(rng.choice((1, 1, 2, 3))):
            _mutate(mutant, rng)
        rtype = mutant.get("resourceType")
        if not isinstance(rtype, str) or rtype not in SUPPORTED_TYPES:
            # validate() turns these away before any model sees them.
            continue
        model_ok = _model_accepts(mutant)
        model_no += not model_ok
        if fastcheck.accepts(copy.deepcopy(mutant), rtype):
            fast_yes += 1
            assert model_ok, f"fastcheck accepted what fhir.resources rejects: {mutant!r}"
    return fast_yes, model_no


def _hospital(patients: int) -> list[Resource]:
    hospital = generate(patients, 7)
    resources = list(hospital.directory())
    for index in range(patients):
        resources += hospital.patient_resources(index)
    return resources


def test_every_accepted_mutant_of_the_seed_is_valid_for_the_model() -> None:
    corpus = _hospital(40)
    fast_yes, model_no = _differential(corpus, 12000, seed=1)
    # Both verdicts must be common, or the comparison proves nothing.
    assert fast_yes > 900, fast_yes
    assert model_no > 7000, model_no


def test_every_accepted_mutant_of_synthea_is_valid_for_the_model(
    synthea: list[Resource],
) -> None:
    fast_yes, model_no = _differential(synthea, 8000, seed=2)
    assert fast_yes > 600, fast_yes
    assert model_no > 4500, model_no


def test_it_accepts_the_real_data_it_is_there_to_speed_up(synthea: list[Resource]) -> None:
    corpus = _hospital(40) + synthea
    taken = sum(fastcheck.accepts(r, r["resourceType"]) for r in corpus)
    # Every resource of both sources takes the quick path today; a drop means lost speed.
    assert taken == len(corpus)


@pytest.mark.parametrize(
    "change",
    [
        {"status": None},
        {"_status": {"extension": []}},
        {"valueString": "x", "valueBoolean": True},
        {"subject": [{"reference": "Patient/1"}]},
        {"code": {}},
        {"category": [None]},
        {"status__ext": {}},
        {"effectiveDateTime": "2020-02-30"},
        {"issued": "2020-01-01"},
        {"contained": [{"resourceType": "Patient", "id": "p"}]},
    ],
)
def test_shapes_it_does_not_know_go_to_the_model(change: dict[str, object]) -> None:
    observation: Resource = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
    }
    assert fastcheck.accepts(dict(observation), "Observation")
    assert not fastcheck.accepts({**observation, **change}, "Observation")


def test_a_model_with_a_rule_it_cannot_see_is_never_accepted_by_it() -> None:
    class Stricter(Observation):
        @model_validator(mode="after")
        def no_final(self) -> Stricter:
            if self.status == "final":
                raise ValueError("no final")
            return self

    assert fastcheck._plan(Observation) is not None
    assert fastcheck._plan(Stricter) is None


def test_validate_still_names_what_is_wrong() -> None:
    with pytest.raises(InvalidResource, match=r"Observation\.effectiveDateTime"):
        validate(
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "x"},
                "effectiveDateTime": "2020-02-30",
            }
        )
