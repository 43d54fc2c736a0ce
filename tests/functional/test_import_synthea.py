"""`rempart import` of the public Synthea fixture: every resource in, every resource back."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest

from rempart.access.pdp import system_decision
from rempart.config import Settings
from rempart.wiring import open_services

FIXTURE = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "synthea-10-patients"
pytestmark = pytest.mark.skipif(
    not FIXTURE.is_dir(),
    reason=f"Synthea fixture absent ({FIXTURE}); see shared/fixtures/README.md",
)


def fixture_resources() -> list[dict[str, Any]]:
    out = []
    for path in sorted(FIXTURE.glob("*.ndjson")):
        if path.name == "log.ndjson":
            continue
        out.extend(json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return out


def identifier_matches(target: dict[str, Any], query: str) -> bool:
    params = dict(parse_qsl(query))
    system, _, value = params["identifier"].partition("|")
    return any(
        i.get("system") == system and i.get("value") == value for i in target.get("identifier", [])
    )


def compare(original: Any, stored: Any, lookup: Any, path: str = "") -> None:
    """Equal in content, except conditional references, which must point at the right resource."""
    if isinstance(original, dict):
        assert isinstance(stored, dict), path
        if isinstance(original.get("reference"), str) and "?" in original["reference"]:
            res_type, _, query = original["reference"].partition("?")
            target_type, _, target_id = stored["reference"].partition("/")
            assert target_type == res_type, path
            assert identifier_matches(lookup(res_type, target_id), query), path
            original = {k: v for k, v in original.items() if k != "reference"}
            stored = {k: v for k, v in stored.items() if k != "reference"}
        assert original.keys() == stored.keys(), path
        for key in original:
            compare(original[key], stored[key], lookup, f"{path}.{key}")
    elif isinstance(original, list):
        assert isinstance(stored, list), path
        assert len(original) == len(stored), path
        for i, (a, b) in enumerate(zip(original, stored, strict=True)):
            compare(a, b, lookup, f"{path}[{i}]")
    else:
        assert original == stored, path


@pytest.mark.slow
def test_import_synthea_fixture_and_read_every_resource_back(settings: Settings) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "rempart.cli",
            "--home",
            str(settings.home),
            "--database",
            settings.database_url,
            "import",
            str(FIXTURE),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    expected = fixture_resources()
    # log.ndjson is the bulk export's own log, not FHIR: its lines are reported, nothing else.
    assert {r["source"].split(":")[0] for r in summary["rejected"]} == {"log.ndjson"}
    assert sum(summary["imported"].values()) == len(expected) == 7160
    assert summary["imported"]["Patient"] == 13

    services = open_services(settings, pool_size=2)
    try:
        # The whole store, as the operator sees it (no clinician may read it all since #4).
        decision = system_decision("test: compare the stored records")

        def lookup(res_type: str, res_id: str) -> dict[str, Any]:
            return services.store.read(decision, res_type, res_id).json()

        for original in expected:
            stored = lookup(original["resourceType"], original["id"])
            assert stored["meta"]["versionId"] == "1"
            stripped = copy.deepcopy(stored)
            stripped["meta"].pop("versionId")
            stripped["meta"].pop("lastUpdated")
            if not stripped["meta"]:
                stripped.pop("meta")
            compare(original, stripped, lookup, original["resourceType"])
    finally:
        services.close()
