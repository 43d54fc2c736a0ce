"""Shared fixtures: the public Synthea R4 sample (read in place, never copied into the repo)."""

from __future__ import annotations

import copy
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from rempart.fhir import references

_DEFAULT = Path(__file__).resolve().parents[3].parent / "shared/fixtures/synthea-10-patients"
SYNTHEA_DIR = Path(os.environ.get("REMPART_SYNTHEA_DIR", _DEFAULT))
SYNTHEA_COUNT = 7160

Resource = dict[str, Any]


def load_synthea() -> list[Resource]:
    files = sorted(SYNTHEA_DIR.glob("*.000.ndjson")) if SYNTHEA_DIR.is_dir() else []
    if not files:
        pytest.skip(
            f"Synthea fixture absent ({SYNTHEA_DIR}); set REMPART_SYNTHEA_DIR or provide "
            "../shared/fixtures/synthea-10-patients"
        )
    out: list[Resource] = []
    for path in files:
        with path.open("rb") as fh:
            out.extend(orjson.loads(line) for line in fh if line.strip())
    return out


@pytest.fixture(scope="session")
def synthea() -> list[Resource]:
    """The 7,160 resources as published (do not mutate: shared by the whole session)."""
    return load_synthea()


@pytest.fixture(scope="session")
def synthea_resolved(synthea: list[Resource]) -> dict[str, list[Resource]]:
    """A copy by type, with conditional and identifier-only references resolved to Type/id, as
    an import would do before storing (and so before indexing)."""
    docs = copy.deepcopy(synthea)
    by_ident: dict[tuple[str, str, str], str] = {}
    for d in docs:
        for ident in d.get("identifier", []):
            if "system" in ident and "value" in ident:
                by_ident[(d["resourceType"], ident["system"], ident["value"])] = d["id"]
    for d in docs:
        for _, ref in references(d):
            literal = ref.get("reference", "")
            if "?identifier=" in literal:
                rtype, _, cond = literal.partition("?identifier=")
                system, _, value = cond.partition("|")
                ref["reference"] = f"{rtype}/{by_ident[(rtype, system, value)]}"
            elif not literal and "identifier" in ref:
                ident = ref["identifier"]
                for rtype in ("Practitioner", "Organization", "Location"):
                    rid = by_ident.get((rtype, ident.get("system"), ident.get("value")))
                    if rid:
                        ref["reference"] = f"{rtype}/{rid}"
    grouped: dict[str, list[Resource]] = defaultdict(list)
    for d in docs:
        grouped[d["resourceType"]].append(d)
    return dict(grouped)
