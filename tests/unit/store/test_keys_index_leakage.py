"""What the index and key tables show without the keys: padded row counts, opaque digests,
bounded key caching. Pins the claims of docs/security.md ("What the database still reveals")."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from rempart.access.pdp import system_decision
from rempart.fhir import extract_index
from rempart.store.codec import INDEX_PAD
from rempart.store.keyring import Keyring
from rempart.store.tables import search_index
from rempart.wiring import Services

SYSTEM = system_decision("tests of the key layer")


def patient(family: str, given: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "name": [{"family": family, "given": [given]}],
        "birthDate": "1970-01-01",
    }


def rows_of(services: Services, res_id: str) -> list[bytes]:
    with services.engine.connect() as conn:
        return list(
            conn.execute(
                select(search_index.c.digest).where(search_index.c.res_id == res_id)
            ).scalars()
        )


def unpadded(services: Services, body: dict[str, Any]) -> int:
    blind = services.store.blind
    return len({blind.digest("Patient", e.param, e.token) for e in extract_index(body)})


def test_index_rows_are_padded_so_name_lengths_do_not_show(services: Services) -> None:
    base = patient("Roy", "Lé")
    n = unpadded(services, base)
    # A longer given name gives more prefix rows, hidden inside the same padded count.
    longer = next(
        body
        for extra in ("a", "an", "ann", "anne", "annet", "annett", "annette")
        if (body := patient("Roy", "Lé" + extra))
        and unpadded(services, body) > n
        and (unpadded(services, body) - 1) // INDEX_PAD == (n - 1) // INDEX_PAD
    )
    a = services.store.create(SYSTEM, base)
    b = services.store.create(SYSTEM, longer)
    counts = {len(rows_of(services, a.res_id)), len(rows_of(services, b.res_id))}
    assert len(counts) == 1
    assert counts.pop() % INDEX_PAD == 0


def test_an_update_replaces_exactly_its_own_rows(services: Services) -> None:
    stored = services.store.create(SYSTEM, patient("Lefort", "Anne"))
    before = rows_of(services, stored.res_id)
    body = stored.json()
    body["name"][0]["family"] = "Lefort-Garnier"
    services.store.update(SYSTEM, "Patient", stored.res_id, body)
    after = rows_of(services, stored.res_id)
    assert len(after) % INDEX_PAD == 0
    assert len(set(after)) == len(after)
    assert set(after) != set(before)


def test_equal_values_share_a_digest_and_only_that_is_visible(services: Services) -> None:
    """Equality leaks (that is what makes lookups work); the value and the field do not."""
    a = services.store.create(SYSTEM, patient("Vasseur", "Paul"))
    b = services.store.create(SYSTEM, patient("Vasseur", "Jean"))
    shared = set(rows_of(services, a.res_id)) & set(rows_of(services, b.res_id))
    assert shared  # the family-name prefixes, the exact family name and the birth date
    with services.engine.connect() as conn:
        raw = b"".join(conn.execute(select(search_index.c.digest)).scalars())
        columns = [c.name for c in search_index.columns]
        most = conn.execute(
            select(func.count()).select_from(search_index).group_by(search_index.c.digest)
        ).scalars()
        assert max(most) >= 2
    assert b"Vasseur" not in raw
    assert b"family" not in raw
    assert columns == ["res_type", "digest", "res_id"]  # no parameter name column


def test_the_key_cache_is_bounded_in_count(services: Services) -> None:
    ids = [services.store.create(SYSTEM, patient(f"Nom{i}", "X")).res_id for i in range(6)]
    keyring = Keyring(services.engine, services.provider, cache_entries=3, cache_seconds=60)
    with services.engine.connect() as conn:
        for pid in ids:
            assert keyring.key_for(conn, pid, create=False) is not None
    assert keyring.cached_count() == 3
