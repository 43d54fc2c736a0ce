"""Recognising a patient's data in whatever reached an attacker.

Two detectors, both run on every response an actor receives (and on every byte of a stolen
database file):

- structural: any FHIR resource in the body (a resource, a Bundle's entries, NDJSON lines) is
  data of the patient it is (a Patient) or references (`{"reference": "Patient/<id>"}`);
- textual: any seeded NIR, phone number, e-mail address or full name of a patient appearing
  anywhere in the text, whatever its shape (an error message, an admin listing, a raw page of
  the database file). Names shared by two patients, or by a patient and a member of staff, are
  left out: they would not say whose data it is.

The harness knows the ground truth (`World`); the server is not asked anything here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from rempart.simulate.world import World

_DIGITS = re.compile(r"\+?\d(?:[ .\-]?\d){8,16}")
_EMAIL = re.compile(r"[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+")
_WORD = re.compile(r"[^\W\d_]+(?:[\-'][^\W\d_]+)*")
# Raw files: digit runs, '@', and family names, which the records keep in capitals (FR core);
# UTF-8 capitals with accents are two bytes, 0xC3 then 0x80-0x9E.
_DIGITS_B = re.compile(rb"[0-9][0-9 .\-]{8,30}[0-9]")
_DOMAIN_B = re.compile(rb"@[A-Za-z0-9\-]{1,63}\.[A-Za-z]{2,}")
_CAPITALS_B = re.compile(rb"[A-Z\xc3][A-Z\x80-\x9e\xc3' \-]{2,40}[A-Z\x80-\x9e]")
# Ids (resources, sessions, requests) are UUIDs in text: four of their groups of hex digits can
# all be decimal and read as a phone number ("...-0639-9866-6200-..."). At 400,000 patients (a
# million NIRs and phone numbers) the ids of a 33 GB database "leaked" 167 patients that way.
_UUID_B = re.compile(rb"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
_LETTER = r"[^\W\d_]"
_PATIENT_REF = "Patient/"


def _digits(text: str) -> str:
    out = re.sub(r"\D", "", text)
    if out.startswith("33") and len(out) == 11:  # +33 6 ... -> 06 ...
        out = "0" + out[2:]
    return out


class PatientIndex:
    """Every way the harness can tell that a piece of data belongs to a seeded patient."""

    def __init__(self, world: World) -> None:
        self.ids = frozenset(p.id for p in world.patients)
        self._tokens: dict[str, set[str]] = {}
        names: dict[tuple[str, ...], set[str]] = {}
        self._given_by_family: dict[str, dict[str, set[str]]] = {}
        for p in world.patients:
            tokens = [p.nir, p.nir[:13]] if p.nir else []  # with and without its key
            tokens += [_digits(phone) for phone in p.phones]
            tokens += [email.casefold() for email in p.emails]
            for token in tokens:
                self._tokens.setdefault(token, set()).add(p.id)
            for name in p.names:
                words = tuple(w.casefold() for w in _WORD.findall(name))
                if len(words) >= 2:
                    names.setdefault(words, set()).add(p.id)
                    given, family = words[0], " ".join(words[1:])
                    by_given = self._given_by_family.setdefault(family, {})
                    by_given.setdefault(given, set()).add(p.id)
        staff = {tuple(_WORD.findall(n)) for n in world.staff_names}
        # A name says whose data it is only if one patient, and no member of staff, bears it.
        self._names = {
            words: next(iter(ids))
            for words, ids in names.items()
            if len(ids) == 1 and words not in staff
        }
        self._name_lengths = sorted({len(w) for w in self._names})

    # ---- structural ------------------------------------------------------------------------

    def in_json(self, doc: Any) -> set[str]:
        found: set[str] = set()
        for resource in _resources(doc):
            if resource.get("resourceType") == "Patient":
                rid = resource.get("id")
                if isinstance(rid, str) and rid in self.ids:
                    found.add(rid)
            found.update(r for r in _references(resource) if r in self.ids)
        return found

    # ---- textual ---------------------------------------------------------------------------

    def _token_hits(self, text: str) -> set[str]:
        found: set[str] = set()
        for match in _DIGITS.finditer(text):
            digits = _digits(match.group())
            candidates = {digits, digits[:15], digits[:13], digits[-10:], digits[:10]}
            for candidate in candidates:
                found |= self._tokens.get(candidate, set())
        for match in _EMAIL.finditer(text):
            found |= self._tokens.get(match.group().casefold(), set())
        return found

    def in_text(self, text: str) -> set[str]:
        """A response body: identifiers, contacts, and full names written in a row."""
        found = self._token_hits(text)
        words = [w.casefold() for w in _WORD.findall(text)]
        for size in self._name_lengths:
            for i in range(len(words) - size + 1):
                hit = self._names.get(tuple(words[i : i + size]))
                if hit is not None:
                    found.add(hit)
        return found

    def in_response(self, text: str, doc: Any) -> set[str]:
        """FHIR resources are attributed structurally (a relative named in a record is part of
        that record, not a record of whoever else bears the name); any other body (an admin
        listing, an error message, an OperationOutcome) is searched as text."""
        found = self.in_json(doc)
        kinds = {r.get("resourceType") for r in _resources(doc)}
        if not kinds or kinds <= {"OperationOutcome", "Bundle"}:
            found |= self.in_text(text)
        return found

    def in_bytes(self, data: bytes) -> set[str]:
        """A raw file: identifiers and contacts anywhere, and a patient's family name with one
        of that patient's given names within 200 bytes (JSON puts them apart, in any order).
        Byte-level patterns find the candidates (fast on hundreds of megabytes of ciphertext);
        each candidate is then checked like a response's text."""
        found: set[str] = set()
        data = _UUID_B.sub(lambda m: b"#" * len(m.group()), data)  # same length: offsets kept
        for match in _DIGITS_B.finditer(data):
            digits = _digits(match.group().decode("ascii"))
            for candidate in {digits, digits[:15], digits[:13], digits[-10:], digits[:10]}:
                found |= self._tokens.get(candidate, set())
        for match in _DOMAIN_B.finditer(data):  # '@domain.tld', then the address around it
            window = data[max(0, match.start() - 64) : match.end()]
            found |= self._token_hits(window.decode("utf-8", errors="ignore"))
        for match in _CAPITALS_B.finditer(data):
            family = match.group().decode("utf-8", errors="ignore").strip().casefold()
            given = self._given_by_family.get(family)
            if not given:
                continue
            # Around the family name, not in it: "PAUL" alone is not Paul PAUL's record.
            before = data[max(0, match.start() - 200) : match.start()]
            after = data[match.end() : match.end() + 200]
            text = (before + b" " + after).decode("utf-8", errors="ignore").casefold()
            for name, ids in given.items():
                if name in text and _as_word(name, text):
                    found |= ids
        return found


def _as_word(name: str, text: str) -> bool:
    """`name` in `text` with no letter touching it: a given name, not three letters of noise
    inside a longer run (ciphertext decodes to scattered letters)."""
    return re.search(f"(?<!{_LETTER}){re.escape(name)}(?!{_LETTER})", text) is not None


def _resources(doc: Any) -> Iterator[dict[str, Any]]:
    """Every FHIR resource in a JSON document, at any depth (Bundles, contained resources)."""
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("resourceType"), str):
                yield node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _references(resource: dict[str, Any]) -> Iterator[str]:
    stack: list[Any] = [resource]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            ref = node.get("reference")
            if isinstance(ref, str) and ref.startswith(_PATIENT_REF):
                yield ref[len(_PATIENT_REF) :]
            stack.extend(v for v in node.values() if isinstance(v, dict | list))
        elif isinstance(node, list):
            stack.extend(node)


@dataclass
class Ledger:
    """Which patients' data reached one actor, and when it first did (simulated micros)."""

    reached: dict[str, int] = field(default_factory=dict)

    def add(self, patients: Iterable[str], at: int) -> None:
        for patient in patients:
            self.reached.setdefault(patient, at)

    def beyond(self, legitimate: frozenset[str] | set[str]) -> set[str]:
        return {p for p in self.reached if p not in legitimate}
