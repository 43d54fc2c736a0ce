"""Integrity failures fail closed *and* reach the security officer's alert queue."""

from __future__ import annotations

import contextvars
import json
import logging
import time
from typing import Any

import pytest
from sqlalchemy import insert, select, update

from rempart import alerts
from rempart.access.pdp import system_decision
from rempart.crypto import KekNotFound
from rempart.crypto.providers.file import FileKeyProvider
from rempart.errors import StoredDataTampered
from rempart.fhir import parse_search
from rempart.store.codec import open_resource
from rempart.store.search import search
from rempart.store.tables import data_key, resource, resource_version
from rempart.wiring import Services

SYSTEM = system_decision("tests of the key layer")


def patient(family: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": family}], "birthDate": "1950-02-03"}


def only_alert(services: Services, kind: str) -> alerts.Alert:
    found = [a for a in alerts.list_alerts(services.engine) if a.kind == kind]
    assert len(found) == 1, [a.kind for a in alerts.list_alerts(services.engine)]
    return found[0]


def no_patient_content(alert: alerts.Alert, *words: str) -> None:
    text = json.dumps([alert.message, alert.details])
    for word in words:
        assert word not in text


def flip_byte(services: Services, res_id: str) -> None:
    with services.engine.begin() as conn:
        blob = conn.execute(
            select(resource_version.c.payload).where(resource_version.c.res_id == res_id)
        ).scalar_one()
        tampered = bytearray(blob)
        tampered[-20] ^= 0x80
        conn.execute(
            update(resource_version)
            .where(resource_version.c.res_id == res_id)
            .values(payload=bytes(tampered))
        )


def test_raise_alert_stores_a_row_and_logs_one_json_line(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="rempart.security"):
        alerts.raise_alert(
            services.engine, "velocity", alerts.WARNING, "too many reads", {"account": "a1", "n": 3}
        )
    alerts.raise_alert(services.engine, "other", alerts.INFO, "later", {})
    listed = alerts.list_alerts(services.engine)
    assert [a.kind for a in listed] == ["other", "velocity"]  # newest first
    first = listed[1]
    assert first.severity == "warning"
    assert first.details == {"account": "a1", "n": 3}
    assert first.acknowledged is None
    line = json.loads(caplog.records[-1].getMessage())
    assert line["event"] == "security_alert"
    assert line["id"] == first.id
    assert line["details"] == {"account": "a1", "n": 3}
    assert caplog.records[-1].name == "rempart.security"
    assert [a.kind for a in alerts.list_alerts(services.engine, kind="velocity")] == ["velocity"]
    assert alerts.list_alerts(services.engine, before=listed[0].created, limit=1)[0].id == first.id


def test_acknowledging_takes_an_alert_out_of_the_open_queue(services: Services) -> None:
    alerts.raise_alert(services.engine, "velocity", alerts.CRITICAL, "x", {})
    alert = alerts.list_alerts(services.engine)[0]
    assert alerts.acknowledge_alert(services.engine, alert.id, "officer-1")
    assert not alerts.acknowledge_alert(services.engine, alert.id, "officer-2")
    assert alerts.list_alerts(services.engine, unacknowledged_only=True) == []
    assert alerts.list_alerts(services.engine)[0].acknowledged_by == "officer-1"


@pytest.mark.parametrize(
    ("severity", "details"),
    [
        ("loud", {}),
        ("info", {"note": {"text": "a nested document"}}),
        ("info", {"note": "x" * 500}),
        ("info", {7: "key not a string"}),
    ],
)
def test_alerts_refuse_anything_but_short_scalar_ids(
    services: Services, severity: str, details: dict[Any, Any]
) -> None:
    with pytest.raises(ValueError, match=r"severity|detail"):
        alerts.raise_alert(services.engine, "kind", severity, "m", details)
    assert alerts.list_alerts(services.engine) == []


def test_flipped_byte_raises_an_alert_naming_ids_only(services: Services) -> None:
    stored = services.store.create(SYSTEM, patient("Lemaire"))
    flip_byte(services, stored.res_id)
    with pytest.raises(StoredDataTampered, match="integrity"):
        services.store.read(SYSTEM, "Patient", stored.res_id)
    alert = only_alert(services, "record-integrity")
    assert alert.severity == "critical"
    assert alert.details == {
        "res_type": "Patient",
        "res_id": stored.res_id,
        "version": 1,
        "owner": stored.res_id,
    }
    no_patient_content(alert, "Lemaire", "1950")


def test_swapped_rows_fail_closed_with_an_alert(services: Services) -> None:
    a = services.store.create(SYSTEM, patient("Chevalier"))
    b = services.store.create(SYSTEM, patient("Gauthier"))
    with services.engine.begin() as conn:
        blob_b = conn.execute(
            select(resource_version.c.payload).where(resource_version.c.res_id == b.res_id)
        ).scalar_one()
        conn.execute(
            update(resource_version)
            .where(resource_version.c.res_id == a.res_id)
            .values(payload=blob_b)
        )
    with pytest.raises(StoredDataTampered):
        services.store.history(SYSTEM, "Patient", a.res_id)
    assert only_alert(services, "record-integrity").details["res_id"] == a.res_id


def test_tampered_row_in_search_results_fails_the_whole_page(services: Services) -> None:
    good = services.store.create(SYSTEM, patient("Perrin"))
    bad = services.store.create(SYSTEM, patient("Perrin"))
    flip_byte(services, bad.res_id)
    query = parse_search("Patient", [("family", "Perrin")], default_count=10, max_count=50)
    with pytest.raises(StoredDataTampered):
        search(services.store, SYSTEM, query)
    assert only_alert(services, "record-integrity").details["res_id"] == bad.res_id
    assert good.res_id != bad.res_id


def test_swapped_data_keys_raise_a_data_key_alert(services: Services) -> None:
    a = services.store.create(SYSTEM, patient("Renard"))
    b = services.store.create(SYSTEM, patient("Blanc"))
    with services.engine.begin() as conn:
        wrapped_b = conn.execute(
            select(data_key.c.wrapped).where(data_key.c.owner == b.res_id)
        ).scalar_one()
        conn.execute(update(data_key).where(data_key.c.owner == a.res_id).values(wrapped=wrapped_b))
    services.keyring.forget(a.res_id)
    with pytest.raises(StoredDataTampered):
        services.store.read(SYSTEM, "Patient", a.res_id)
    alert = only_alert(services, "data-key-integrity")
    assert alert.details == {"owner": a.res_id, "kek_id": services.provider.current_kek_id()}


def test_wrong_key_file_fails_closed_with_an_alert(services: Services) -> None:
    stored = services.store.create(SYSTEM, patient("Lambert"))
    provider = services.provider
    assert isinstance(provider, FileKeyProvider)
    # Same KEK id, other key bytes: a key file from another installation put in its place.
    doc = json.loads(provider.path.read_bytes())
    other = FileKeyProvider.create(provider.path.with_name("other.json"))
    other_doc = json.loads(other.path.read_bytes())
    doc["keks"] = {doc["current"]: next(iter(other_doc["keks"].values()))}
    provider.path.write_text(json.dumps(doc))
    time.sleep(0.01)
    provider.check()
    services.keyring.forget(stored.res_id)
    with pytest.raises(StoredDataTampered):
        services.store.read(SYSTEM, "Patient", stored.res_id)
    assert only_alert(services, "data-key-integrity").details["owner"] == stored.res_id


def test_retired_kek_fails_closed_with_an_alert(services: Services) -> None:
    stored = services.store.create(SYSTEM, patient("Mercier"))
    old = services.provider.current_kek_id()
    services.provider.create_kek()
    services.provider.retire_kek(old)  # without re-wrapping first: the operator's mistake
    services.keyring.forget(stored.res_id)
    with pytest.raises(KekNotFound):  # the API answers 503: the key service is at fault
        services.store.read(SYSTEM, "Patient", stored.res_id)
    assert only_alert(services, "kek-missing").details == {"owner": stored.res_id, "kek_id": old}


def test_deleted_data_key_fails_closed_with_an_alert(services: Services) -> None:
    stored = services.store.create(SYSTEM, patient("Fontaine"))
    with services.engine.begin() as conn:
        conn.execute(data_key.delete().where(data_key.c.owner == stored.res_id))
    services.keyring.forget(stored.res_id)
    with pytest.raises(StoredDataTampered, match="data key is gone"):
        services.store.read(SYSTEM, "Patient", stored.res_id)
    assert only_alert(services, "data-key-missing").details["res_id"] == stored.res_id


def test_alert_survives_the_failing_transaction_even_on_one_writer_sqlite(
    services: Services,
) -> None:
    """The alert is raised while the caller's transaction holds SQLite's write lock."""
    stored = services.store.create(SYSTEM, patient("Rolland"))
    flip_byte(services, stored.res_id)
    started = time.monotonic()

    def failing_write() -> None:
        with services.engine.begin() as conn:
            conn.execute(
                insert(resource).values(
                    res_type="Basic", res_id="x", version=1, compartment=None, last_updated=0
                )
            )  # this transaction now holds the write lock
            key = services.keyring.key_for(conn, stored.res_id, create=False)
            payload = conn.execute(
                select(resource_version.c.payload).where(resource_version.c.res_id == stored.res_id)
            ).scalar_one()
            open_resource(key, payload, "Patient", stored.res_id, 1, stored.res_id)

    with pytest.raises(StoredDataTampered):
        failing_write()
    assert time.monotonic() - started < alerts.SQLITE_WAIT_SECONDS + 5
    deadline = time.monotonic() + 20
    while not alerts.list_alerts(services.engine) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert only_alert(services, "record-integrity").details["res_id"] == stored.res_id
    with services.engine.connect() as conn:  # the failing transaction itself was rolled back
        assert conn.execute(select(resource).where(resource.c.res_id == "x")).first() is None


def test_an_alert_with_no_store_bound_is_still_logged(caplog: pytest.LogCaptureFixture) -> None:
    """Decode code outside any keyring (a tool opening a blob by hand) still leaves a trace."""
    with caplog.at_level(logging.CRITICAL, logger="rempart.security"):
        contextvars.Context().run(
            alerts.raise_bound_alert, "record-integrity", alerts.CRITICAL, "m", {"res_id": "r1"}
        )
    line = json.loads(caplog.records[-1].getMessage())
    assert line["stored"] is False
    assert line["details"] == {"res_id": "r1"}
