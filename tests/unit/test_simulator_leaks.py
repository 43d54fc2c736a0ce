"""The simulator's leak accounting can fail: data that reaches an attacker is counted.

A harness that counts nothing would report "0 records leaked" for any server. These tests feed
it deliberately leaky answers (a server that hands out records, a database file with a plaintext
page) and check each one is counted, attributed to the right patient, and turned into a missed
target; and that the legitimate scope, the staff's own names and ordinary ciphertext are not.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import tempfile
from pathlib import Path

import httpx
import orjson
import pytest

from rempart import clock
from rempart.identity.totp import matching_step
from rempart.simulate.actor import Actor, Exchange
from rempart.simulate.attacks_admin import steal_database
from rempart.simulate.leaks import PatientIndex
from rempart.simulate.oracle import Legitimate
from rempart.simulate.playbook import Playbook, containment_time
from rempart.simulate.report import PlaybookResult, Report
from rempart.simulate.world import Credentials, SeededPatient, World

ALICE = SeededPatient(
    id="p-alice",
    nir="255049935055828",
    family="DE SOUSA",
    given="Aurélie",
    birth_date="1947-11-27",
    alive=True,
    adult=True,
    decoy=False,
    phones=("06 39 98 66 62",),
    emails=("aurelie.desousa@example.fr",),
    names=("Aurélie DE SOUSA",),
)
BOB = SeededPatient(
    id="p-bob",
    nir="180017512345678",
    family="MARTIN",
    given="Jean",
    birth_date="1980-01-01",
    alive=True,
    adult=True,
    decoy=False,
    phones=("07 11 22 33 44",),
    emails=(),
    names=("Jean MARTIN",),
)
CAROL = SeededPatient(
    id="p-carol",
    nir="299129912345611",
    family="GAY",
    given="Alexandre",
    birth_date="1999-12-01",
    alive=True,
    adult=True,
    decoy=False,
    phones=(),
    emails=(),
    names=("Alexandre GAY",),  # also a doctor's name: never evidence by itself
)
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
STAFF = Credentials("d.mallory", "pw", SECRET, "clinician", "Practitioner/x", None)


@pytest.fixture
def index() -> PatientIndex:
    world = World(
        patients=[ALICE, BOB, CAROL],
        accounts=[STAFF],
        units=[],
        establishments=[],
        staff_names=frozenset({"alexandre gay"}),
    )
    return PatientIndex(world)


def _leaky_server(request: httpx.Request) -> httpx.Response:
    """A deliberately broken server: it answers every read with a patient's records."""
    if request.url.path == "/fhir/Patient/p-alice":
        body = {"resourceType": "Patient", "id": "p-alice", "name": [{"family": "DE SOUSA"}]}
        return httpx.Response(200, json=body)
    if request.url.path == "/fhir/Observation":
        bundle = {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [
                {
                    "resource": {
                        "resourceType": "Observation",
                        "subject": {"reference": "Patient/p-bob"},
                    }
                }
            ],
        }
        return httpx.Response(200, json=bundle)
    if request.url.path == "/admin/accounts":  # an identifier in a listing, no FHIR at all
        return httpx.Response(200, json=[{"note": "NIR 2 55 04 99 350 558 28"}])
    return httpx.Response(403, json={"resourceType": "OperationOutcome"})


def _actor(index: PatientIndex) -> Actor:
    client = httpx.Client(base_url="http://leaky", transport=httpx.MockTransport(_leaky_server))
    return Actor("mallory", STAFF, client, index, token="stolen")


def test_records_served_to_an_attacker_are_counted(index: PatientIndex) -> None:
    actor = _actor(index)
    actor.call("GET", "/fhir/Patient/p-alice")
    actor.call("GET", "/fhir/Observation", params={"patient": "p-bob"})
    actor.call("GET", "/fhir/Patient/p-carol")  # refused: nothing counted
    book = Playbook("leaky", "clinician", actor, Legitimate("d.mallory"), scrape=True)
    assert book.leaked() == {"p-alice", "p-bob"}
    book.legit = Legitimate("d.mallory", {"p-bob"})  # Bob is one of the attacker's patients
    assert book.leaked() == {"p-alice"}


def test_identifiers_outside_fhir_are_counted_for_attackers_with_no_scope(
    index: PatientIndex,
) -> None:
    actor = _actor(index)
    actor.call("GET", "/admin/accounts")
    book = Playbook("admin", "admin", actor, None, scrape=False)
    assert book.leaked() == {"p-alice"}


def test_a_leak_misses_the_targets() -> None:
    def result(kind: str, leaked: int) -> PlaybookResult:
        return PlaybookResult("p", "a", kind, leaked, 10, True, 5.0, 1, scrape=False)

    clean = Report(10, [result("admin", 0), result("clinician", 25)], 100, 0, 0)
    assert clean.misses() == []
    for kind, leaked in (("admin", 1), ("patient", 1), ("database", 1), ("secretary", 26)):
        report = Report(10, [result(kind, leaked)], 100, 0, 0)
        assert len(report.misses()) == 1, (kind, leaked)
    assert Report(10, [], 999, 1, 0).misses()  # 1 false containment in 999 clinician-days


def test_textual_detection(index: PatientIndex) -> None:
    assert index.in_text("Mme AURÉLIE DE SOUSA, tél. +33 6 39 98 66 62") == {"p-alice"}
    assert index.in_text("écrire à aurelie.desousa@example.fr") == {"p-alice"}
    assert index.in_text("NIR 1800175123456") == {"p-bob"}  # without its key
    assert index.in_text("Dr Alexandre GAY; Jean a vu MARTIN") == set()  # staff name; apart


def test_a_database_file_with_a_plaintext_page_is_counted(
    index: PatientIndex, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    conn = sqlite3.connect(home / "rempart.sqlite3")
    conn.execute("CREATE TABLE resource_version (payload BLOB, note TEXT)")
    sealed = base64.b64decode("q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQ") * 50  # ciphertext-like noise
    conn.execute("INSERT INTO resource_version VALUES (?, ?)", (sealed, "ok"))
    leaked = {"resourceType": "Observation", "subject": {"reference": "Patient/p-bob"}}
    conn.execute("INSERT INTO resource_version VALUES (?, ?)", (orjson.dumps(leaked), None))
    record = json.dumps({"family": "DE SOUSA", "given": ["Aurélie"]}, ensure_ascii=False)
    conn.execute("INSERT INTO resource_version VALUES (?, ?)", (record.encode(), None))
    conn.commit()
    conn.close()
    book = Playbook("db", "thief", None, None, scrape=False)
    steal_database(home, index, book)
    assert book.leaked() == {"p-alice", "p-bob"}


def test_the_thief_reads_the_database_files_in_place_and_not_the_key_file(
    index: PatientIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    conn = sqlite3.connect(home / "rempart.sqlite3")
    conn.execute("CREATE TABLE t (v BLOB)")
    conn.execute("INSERT INTO t VALUES (?)", (b"NIR 1800175123456",))
    conn.commit()
    conn.close()
    # Beside it, what the thief does not take: the key file (here holding Alice's name in
    # clear, so that reading it would count her).
    (home / "keys.json").write_text("AURÉLIE DE SOUSA +33 6 39 98 66 62", encoding="utf-8")
    before = sorted(p.name for p in home.iterdir())
    monkeypatch.setattr(tempfile, "mkdtemp", lambda *a, **k: pytest.fail("copied"))
    book = Playbook("db", "thief", None, None, scrape=False)
    steal_database(home, index, book)
    assert book.leaked() == {"p-bob"}
    assert sorted(p.name for p in home.iterdir()) == before


def test_containment_is_judged_on_refused_canaries() -> None:
    def ex(at: int, status: int, canary: bool = False) -> Exchange:
        return Exchange(at, "GET", "/x", status, canary, False)

    served = [ex(1, 200), ex(2, 403), ex(3, 403), ex(4, 200, canary=True)]
    assert containment_time(served) is None  # policy refusals; still served
    cut = [ex(1, 200), ex(2, 403), ex(3, 401), ex(4, 401, canary=True)]
    assert containment_time(cut) == 3
    no_probe = [ex(1, 200), ex(2, 401)]
    assert containment_time(no_probe) is None  # never checked: not claimed


def test_simulated_time_moves_forward_only_and_is_restored() -> None:
    before = clock.now_micros()
    with clock.SimulatedTime() as simulated:
        simulated.advance(3600)
        assert clock.now_micros() - before >= 3600 * clock.SECOND
        with pytest.raises(ValueError, match="forward"):
            simulated.advance(-1)
        # TOTP follows the simulated clock: a code of "now" is accepted, one of real time not.
        secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
        import pyotp

        code = pyotp.TOTP(secret).at(clock.now_seconds())
        assert matching_step(secret, code) is not None
        assert matching_step(secret, pyotp.TOTP(secret).now()) is None
    assert abs(clock.now_micros() - before) < 600 * clock.SECOND
    with pytest.raises(RuntimeError):
        clock.SimulatedTime().advance(1)


def test_a_relative_named_in_a_record_is_not_another_patients_record(
    index: PatientIndex,
) -> None:
    record = {
        "resourceType": "Patient",
        "id": "p-alice",
        "contact": [{"name": {"text": "Jean MARTIN"}, "telecom": [{"value": "07 11 22 33 44"}]}],
    }
    assert index.in_response(orjson.dumps(record).decode(), record) == {"p-alice"}
    problem = {"resourceType": "OperationOutcome", "issue": [{"diagnostics": "Jean MARTIN"}]}
    assert index.in_response(orjson.dumps(problem).decode(), problem) == {"p-bob"}


def test_alerts_are_attributed_by_account_id_or_username() -> None:
    from rempart.simulate.officer import _items, _seen, about

    page = {
        "alerts": [
            {
                "kind": "guard-denials",
                "created": 5,
                "message": "session of d.mallory was refused 11 times in 5 min",
                "details": {"account_id": "a-1", "count": 11},
            },
            {"kind": "break-glass", "created": 6, "message": "granted", "details": {}},
        ],
        "next_before": None,
    }
    items = _items(page)
    assert items is not None
    seen = [_seen(i) for i in items]
    assert [about(a, "a-1", "nobody") for a in seen] == [True, False]
    assert [about(a, "zzz", "d.mallory") for a in seen] == [True, False]
    assert not about(seen[0], "a-10", "d.mallor")  # whole values only, never a prefix


class _NoScope:
    """The oracle of a weakened harness: nobody legitimately sees anyone."""

    def legitimate(self, username: str) -> frozenset[str]:
        return frozenset()


def _server_without_policy(request: httpx.Request) -> httpx.Response:
    """A server whose policy was removed: it signs anyone in and serves every record."""
    path = request.url.path
    if path == "/auth/login":
        return httpx.Response(200, json={"mfa_required": True, "mfa_token": "t"})
    if path == "/auth/mfa":
        return httpx.Response(200, json={"access_token": "session"})
    if path.startswith("/fhir/Patient/"):
        pid = path.rsplit("/", 1)[1]
        return httpx.Response(200, json={"resourceType": "Patient", "id": pid})
    return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset"})


def test_the_patient_probe_against_a_server_without_policy_misses_its_target(
    index: PatientIndex,
) -> None:
    import random

    from rempart.identity.settings import SessionLimits
    from rempart.simulate.attacks_staff import patient_probe
    from rempart.simulate.engine import Sim

    world = World(patients=[ALICE, BOB, CAROL], accounts=[], units=[], establishments=[])
    holder = Credentials("patient.0001", "pw", SECRET, "patient", None, "Patient/p-carol")
    client = httpx.Client(
        base_url="http://weak", transport=httpx.MockTransport(_server_without_policy)
    )
    sim = Sim(
        world,
        index,
        _NoScope(),
        "http://weak",
        clock.SimulatedTime(),
        random.Random(1),
        SessionLimits(),
    )  # type: ignore[arg-type]
    actor = Actor("probe", holder, client, index)
    book = Playbook("patient-probing-ids", "patient", actor, Legitimate("patient.0001"), True)
    book.legit = Legitimate("patient.0001", {"p-carol"})  # their own record is theirs
    for _ in patient_probe(sim, book):
        pass
    assert book.leaked() == {"p-alice", "p-bob"}
    result = PlaybookResult(
        book.name, "patient", "patient", len(book.leaked()), book.requests, False, None, 0, True
    )
    misses = Report(3, [result], 100, 0, 0).misses()
    assert any("2 records leaked" in m for m in misses)
    assert any("not contained" in m for m in misses)


def test_only_the_simulator_moves_the_clock() -> None:
    """The offset is reachable from Python in this process only: no route, setting or
    environment variable reads or sets it, and nothing outside the simulator uses it."""
    src = Path(clock.__file__).parent
    users = sorted(
        str(path.relative_to(src))
        for path in src.rglob("*.py")
        if ("SimulatedTime" in (text := path.read_text()) or "_Offset" in text)
        and path.name != "clock.py"
    )
    assert all(u.startswith("simulate/") for u in users), users
    assert "import os" not in Path(clock.__file__).read_text()  # no variable sets it


def test_ids_that_read_as_phone_numbers_are_not_counted(index: PatientIndex) -> None:
    # Four groups of a UUID can all be decimal: "0639-9866-6200" holds Alice's 0639986662.
    noise = bytes(range(256)) * 4
    an_id = b"a1b2c3dd-0639-9866-6200-1a2b3c4d5e6f"
    assert index.in_bytes(noise + an_id + noise) == set()
    # The same digits as a phone number, in the forms a record or a note would hold them.
    for phone in (b'"06 39 98 66 62"', b"tel:0639986662", b"06.39.98.66.62", b"0639-9866-62"):
        assert index.in_bytes(noise + phone + noise) == {"p-alice"}, phone


def test_a_family_name_alone_is_not_its_namesakes_record() -> None:
    paul = SeededPatient(
        id="p-paul",
        nir="",
        family="PAUL",
        given="Paul",
        birth_date="1950-05-05",
        alive=True,
        adult=True,
        decoy=False,
        phones=(),
        emails=(),
        names=("Paul PAUL",),
    )
    world = World(
        patients=[paul], accounts=[], units=[], establishments=[], staff_names=frozenset()
    )
    index = PatientIndex(world)
    noise = b"\x8f\x13\xe2" * 40
    assert index.in_bytes(noise + b"PAUL" + noise) == set()  # the family name is not a given
    assert index.in_bytes(noise + b"PAUL" + b"\x01zpaulq\x02" + noise) == set()  # inside noise
    record = b'{"family": "PAUL", "given": ["Paul"]}'
    assert index.in_bytes(noise + record + noise) == {"p-paul"}
    assert index.in_bytes(noise + b"Paul PAUL" + noise) == {"p-paul"}
