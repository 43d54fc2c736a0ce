"""A data key is cached only once its row is committed: a rolled-back creation must not leave
behind a cached key that later writes would seal under, with no row to read them back by."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from rempart.store.tables import data_key
from rempart.wiring import Services

OWNER = "Patient/cache-test"


def key_rows(services: Services, owner: str) -> int:
    with services.engine.connect() as conn:
        count = select(func.count()).select_from(data_key).where(data_key.c.owner == owner)
        return int(conn.execute(count).scalar_one())


def stored_key(services: Services, owner: str) -> bytes | None:
    keyring = services.store.keyring
    keyring.forget(owner)  # read the row, not the cache
    with services.engine.connect() as conn:
        return keyring.key_for(conn, owner, create=False)


@pytest.mark.parametrize("how", ["key_for", "create_many"])
def test_a_key_created_in_a_rolled_back_transaction_is_not_reused(
    services: Services, how: str
) -> None:
    keyring = services.store.keyring

    def create(conn: object) -> bytes:
        if how == "key_for":
            key = keyring.key_for(conn, OWNER, create=True)  # type: ignore[arg-type]
            assert key is not None
            return key
        return keyring.create_many(conn, {OWNER})[OWNER]  # type: ignore[arg-type]

    with services.engine.connect() as conn:
        lost = create(conn)
        # The same transaction sees its own key again (a bundle's second resource).
        assert create(conn) == lost
        conn.rollback()
    assert key_rows(services, OWNER) == 0
    with services.engine.begin() as conn:
        kept = create(conn)
    assert kept != lost
    assert stored_key(services, OWNER) == kept


def test_a_committed_key_is_served_from_the_cache(services: Services) -> None:
    keyring = services.store.keyring
    with services.engine.begin() as conn:
        key = keyring.key_for(conn, OWNER, create=True)
    before = keyring.cached_count()
    with services.engine.connect() as conn:
        assert keyring.key_for(conn, OWNER, create=False) == key
    assert keyring.cached_count() >= 1
    assert keyring.cached_count() >= before


def test_a_key_created_under_a_rolled_back_savepoint_is_not_reused(services: Services) -> None:
    keyring = services.store.keyring
    with services.engine.begin() as conn:
        savepoint = conn.begin_nested()
        lost = keyring.key_for(conn, OWNER, create=True)
        savepoint.rollback()
        kept = keyring.key_for(conn, OWNER, create=True)
    assert kept is not None
    assert kept != lost
    assert stored_key(services, OWNER) == kept
