"""Reading FHIR files: NDJSON (one resource a line), Bundle JSON, or folders of either."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson


@dataclass(frozen=True)
class Item:
    source: str  # "file:line" or "file#entry", for the rejection report
    resource: object


@dataclass(frozen=True)
class Unreadable:
    source: str
    reason: str


def expand(paths: list[Path]) -> list[Path]:
    """Files named, and the .ndjson/.json files of folders named, in a stable order."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(
                sorted(
                    p for p in path.rglob("*") if p.suffix in (".ndjson", ".json") and p.is_file()
                )
            )
        else:
            out.append(path)
    return out


def read(path: Path) -> Iterator[Item | Unreadable]:
    if not path.is_file():
        yield Unreadable(str(path), "no such file")
        return
    if path.suffix == ".ndjson":
        yield from _ndjson(path)
    else:
        yield from _bundle(path)


def _ndjson(path: Path) -> Iterator[Item | Unreadable]:
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            source = f"{path.name}:{number}"
            try:
                yield Item(source, orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                yield Unreadable(source, f"not JSON: {exc}")


def _bundle(path: Path) -> Iterator[Item | Unreadable]:
    try:
        doc = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        yield Unreadable(path.name, f"not JSON: {exc}")
        return
    if not isinstance(doc, dict):
        yield Unreadable(path.name, "not a JSON object")
        return
    if doc.get("resourceType") != "Bundle":
        yield Item(path.name, doc)
        return
    for index, entry in enumerate(doc.get("entry") or []):
        source = f"{path.name}#entry{index}"
        if isinstance(entry, dict) and "resource" in entry:
            resource = entry["resource"]
            full_url = entry.get("fullUrl")
            if isinstance(resource, dict) and isinstance(full_url, str):
                # Keep the entry's fullUrl beside it: references inside the Bundle use it.
                resource = {**resource, "__fullUrl": full_url}
            yield Item(source, resource)
        else:
            yield Unreadable(source, "entry has no resource")
