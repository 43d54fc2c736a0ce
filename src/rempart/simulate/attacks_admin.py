"""Attacks that hold no care relationship at all: administrators and a stolen database file.

- stolen admin password: the password and nothing else (phished, reused, from an infostealer
  that did not get the authenticator): guesses TOTP codes and recovery codes, tries the
  half-way `mfa_token` as a bearer token;
- live admin session: a real-time phishing proxy took an administrator's session right after
  sign-in (fresh factor, token only). It walks every endpoint of the OpenAPI document, asks for
  every change that could open clinical data for itself (role, practitioner link, units, new
  accounts, factor and password resets, settings, exports), tries to approve its own requests,
  tries the FHIR API, then keeps the session alive polling for an approval that never comes;
- stolen database file: the SQLite file with its WAL and shared memory as they lie on disk at
  the end of the traffic, without the key file; every byte and every column is searched for any
  seeded patient's identifier, phone, e-mail or name, and for any plaintext FHIR resource.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Generator
from pathlib import Path
from typing import Any

import orjson

from rempart.simulate.actor import Actor, Reply
from rempart.simulate.attacks_staff import Cutoff
from rempart.simulate.engine import Sim, Steps
from rempart.simulate.leaks import PatientIndex
from rempart.simulate.playbook import Playbook

CHUNK = 64 * 1024 * 1024
OVERLAP = 64 * 1024
DUMMY = "00000000-0000-4000-8000-000000000000"
_PARAM = re.compile(r"\{([^}]+)\}")


def admin_canary(actor: Actor) -> Reply:
    return actor.call("GET", "/admin/accounts", params={"limit": "1"}, canary=True)


def stolen_password(sim: Sim, pb: Playbook) -> Steps:
    actor = pb.actor
    assert actor is not None
    actor.holds_totp = False
    pb.begin(sim.oracle)
    rng = actor.rng
    for attempt in range(30):
        first = actor.call(
            "POST",
            "/auth/login",
            body={"username": actor.creds.username, "password": actor.creds.password},
            auth=False,
        )
        if first.status == 429:
            yield 60.0
            continue
        token = first.doc.get("mfa_token", "") if isinstance(first.doc, dict) else ""
        if not token:
            yield rng.uniform(2, 8)
            continue
        proof: dict[str, str] = (
            {"recovery_code": f"{rng.getrandbits(40):010x}"}
            if attempt % 6 == 5
            else {"code": f"{rng.randrange(10**6):06d}"}
        )
        reply = actor.call("POST", "/auth/mfa", body={"mfa_token": token, **proof}, auth=False)
        if reply.ok and isinstance(reply.doc, dict):
            actor.token = str(reply.doc.get("access_token"))
            break
        yield rng.uniform(0.5, 2)
        # The half-way token as a session, against the console and the records.
        for path in ("/admin/accounts", "/fhir/Patient"):
            actor.call("GET", path, params={"_count": "200"} if "fhir" in path else None)
            actor.token = token
            actor.call("GET", path)
            actor.token = None
        yield rng.uniform(2, 8)
    pb.never_authenticated = actor.token is None
    if actor.token is None:
        admin_canary(actor)


def _requests_for(sim: Sim, me: str, victim: str) -> list[dict[str, Any]]:
    units = [u.org for u in sim.world.units]
    practitioner = next(
        (a.practitioner for a in sim.world.accounts if a.practitioner), "Practitioner/x"
    )
    patient = sim.world.patients[0].id
    asks: list[dict[str, Any]] = [
        {"kind": "change-role", "account_id": me, "role": "clinician"},
        {"kind": "link-practitioner", "account_id": me, "practitioner": practitioner},
        *({"kind": "add-unit-membership", "account_id": me, "unit": u} for u in units[:5]),
        {
            "kind": "create-account",
            "username": "dr.remplacant",
            "role": "clinician",
            "display_name": "Dr Remplaçant",
            "practitioner": practitioner,
            "units": units[:20],
        },
        {"kind": "reset-factor", "account_id": victim},
        {"kind": "reset-password", "account_id": victim},
        {"kind": "enable-account", "account_id": victim},
        {"kind": "create-integration-client", "username": "lab-feed", "display_name": "Lab"},
        {"kind": "change-setting", "key": "policy.care_window_days", "value": 365},
        {"kind": "change-setting", "key": "policy.break_glass_daily_cap", "value": 20},
        {  # blind the guard before the real theft
            "kind": "guard-settings",
            "values": {
                "guard.clinician.patients_short": 2000,
                "guard.clinician.patients_day": 20000,
                "guard.response.decoy": 0,
            },
        },
        {"kind": "erase-patient", "patient": f"Patient/{patient}", "legal_basis": "RGPD art. 17"},
        {"kind": "prune-audit", "before": "2020-01-01"},
    ]
    return asks


def _fill(path: str, values: dict[str, str]) -> str:
    return _PARAM.sub(lambda m: values.get(m.group(1), DUMMY), path)


def admin_live_session(sim: Sim, pb: Playbook) -> Steps:
    actor = pb.actor
    assert actor is not None
    if not actor.login():
        pb.notes.append("victim sign-in failed")
        return
    actor.holds_password = False
    actor.holds_totp = False
    yield 2.0
    pb.begin(sim.oracle)
    cut = Cutoff(actor, admin_canary)
    listing = actor.call("GET", "/admin/accounts", params={"limit": "500"})
    accounts = listing.doc if isinstance(listing.doc, list) else []
    me = next((a["id"] for a in accounts if a.get("username") == actor.creds.username), DUMMY)
    victim = next((a["id"] for a in accounts if a.get("role") == "clinician"), DUMMY)
    made: list[str] = []
    cut_off = yield from _ask_everything(sim, actor, cut, _requests_for(sim, me, victim), made)
    cut_off = cut_off or (yield from _walk_openapi(sim, actor, cut, victim, made))
    if not cut_off:
        yield from _records_then_wait(sim, actor, cut, made)
    yield from cut.confirm()


Cut = Generator[float, None, bool]  # steps; returns True when the attacker was cut off


def _ask_everything(
    sim: Sim, actor: Actor, cut: Cutoff, asks: list[dict[str, Any]], made: list[str]
) -> Cut:
    for ask in asks:
        reply = actor.call("POST", "/admin/requests", body=ask)
        if reply.ok and isinstance(reply.doc, dict) and "id" in reply.doc:
            made.append(str(reply.doc["id"]))
        if cut.after(reply):
            return True
        yield actor.rng.uniform(1, 4)
    for request_id in made:  # four eyes: never one's own
        actor.call("POST", f"/admin/requests/{request_id}/approve", body={"comment": "ok"})
        yield actor.rng.uniform(1, 3)
    return False


def _walk_openapi(sim: Sim, actor: Actor, cut: Cutoff, victim: str, made: list[str]) -> Cut:
    spec = actor.call("GET", "/openapi.json", auth=False)
    paths: dict[str, Any] = spec.doc.get("paths", {}) if isinstance(spec.doc, dict) else {}
    patient = sim.world.patients[1].id
    values = {
        "account_id": victim,
        "request_id": made[0] if made else DUMMY,
        "res_type": "Patient",
        "res_id": patient,
        "version": "1",
        "rest": "_history",
        "provider": "psc",
    }
    for path in sorted(paths):
        if path.startswith("/auth") or path.endswith(("/approve", "/reject")):
            continue  # sign-in is not the target; a reject would withdraw its own requests
        for method in sorted(paths[path]):
            verb = method.upper()
            closing = verb == "DELETE" or (verb == "POST" and "disable" in path)
            # Closing someone's access would be noticed at once: only on an unknown account.
            target = _fill(path, {**values, "account_id": DUMMY} if closing else values)
            body = _body_for(path, patient) if verb in ("POST", "PUT", "PATCH") else None
            params = {"unit": sim.world.units[0].org} if verb == "DELETE" else None
            if cut.after(actor.call(verb, target, body=body, params=params)):
                return True
            yield actor.rng.uniform(0.5, 3)
    return False


def _records_then_wait(sim: Sim, actor: Actor, cut: Cutoff, made: list[str]) -> Cut:
    for pid in [p.id for p in sim.world.patients[:20]]:
        if cut.after(actor.call("GET", f"/fhir/Patient/{pid}")):
            return True
        yield actor.rng.uniform(0.5, 2)
    for params in ({"_count": "200"}, {"name": "ma"}, {"birthdate": "ge1900-01-01"}):
        actor.call("GET", "/fhir/Patient", params=params)
        yield actor.rng.uniform(0.5, 2)
    for _ in range(6):  # waits for an approval, keeping the session alive
        yield 600.0
        for request_id in made[:3]:
            actor.call("GET", f"/admin/requests/{request_id}")
        if cut.after(admin_canary(actor)):
            return True
    return False


def _body_for(path: str, patient: str) -> dict[str, Any]:
    if path.endswith("/break-glass"):
        return {"patient": f"Patient/{patient}", "reason": "Contrôle qualité des dossiers"}
    if path.endswith("/exports"):
        return {
            "cohort_name": "all patients",
            "purpose": "quality audit of all records",
            "query": "Patient?birthdate=ge1900-01-01",
            "types": ["Patient", "Observation", "Condition"],
            "identified": True,
        }
    if path.endswith("/set-password"):
        return {"username": "dr.remplacant", "code": "000000", "password": "x" * 20}
    if path.endswith("/review"):
        return {"verdict": "justified"}
    if path.startswith("/fhir"):
        return {"resourceType": "Patient", "name": [{"family": "TEST"}]}
    return {}


# ---- the stolen database file --------------------------------------------------------------


def steal_database(home: Path, index: PatientIndex, pb: Playbook) -> None:
    """Read the database files (file, WAL, shared memory) as a thief with file access would,
    and try to recover any patient's data without the key file.

    The files are read where they lie, not copied: a thief's copy holds the same bytes, and a
    second copy of a 750,000-patient hospital (~62 GB) does not fit beside the first. The
    traffic has stopped by now; the server only checkpoints, which moves pages from the WAL
    into the file, so a value is seen in one or the other. SQLite reads them read-only.
    """
    files = sorted(p for p in home.glob("*.sqlite3*") if p.is_file())
    found: set[str] = set()
    for path in files:
        with path.open("rb") as fh:
            tail = b""
            while chunk := fh.read(CHUNK):
                data = tail + chunk  # overlap: a value across two chunks is seen whole
                found |= index.in_bytes(data)
                found |= _plaintext_resources(data, index)
                tail = data[-OVERLAP:]
    for path in files:
        if path.suffix == ".sqlite3":
            found |= _text_columns(path, index)
    pb.offline_leaks = found


def _plaintext_resources(data: bytes, index: PatientIndex) -> set[str]:
    """Any FHIR JSON stored in clear: parse from each `{"resourceType"` to its end."""
    found: set[str] = set()
    for match in re.finditer(rb'\{"resourceType"', data):
        chunk = data[match.start() : match.start() + 65536]
        depth, end = 0, 0
        for i, byte in enumerate(chunk):
            depth += (byte == 0x7B) - (byte == 0x7D)
            if depth == 0:
                end = i + 1
                break
        if end:
            try:
                found |= index.in_json(orjson.loads(chunk[:end]))
            except orjson.JSONDecodeError:
                continue
    return found


def _text_columns(path: Path, index: PatientIndex) -> set[str]:
    """Long TEXT values of every table, read through SQLite with the WAL applied: a value
    longer than a page is split over overflow pages in the raw file, whole here."""
    found: set[str] = set()
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            quoted = '"' + table.replace('"', '""') + '"'
            columns = [c[1] for c in conn.execute(f"PRAGMA table_info({quoted})")]
            for column in columns:
                name = '"' + column.replace('"', '""') + '"'
                query = (
                    f"SELECT {name} FROM {quoted} "  # noqa: S608 - names from the stolen file
                    f"WHERE typeof({name}) = 'text' AND length({name}) > 1000"
                )
                chunk = "\n".join(str(v) for (v,) in conn.execute(query))
                if chunk:
                    found |= index.in_text(chunk)
    finally:
        conn.close()
    return found
