"""Unit memberships: which account works in which unit or establishment.

Adding one opens clinical data (a unit member sees the patients staying in the unit), so it is
done only by an approved four-eyes request (`requests.py`) or by the local operator's seed of a
synthetic hospital. Removing one closes access and takes effect at once.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, Engine, delete, insert, select

from rempart.access.tables import unit_membership
from rempart.clock import now_micros
from rempart.identity.tables import account


def memberships(conn: Connection, account_id: str) -> list[str]:
    rows = conn.execute(
        select(unit_membership.c.unit)
        .where(unit_membership.c.account_id == account_id)
        .order_by(unit_membership.c.unit)
    )
    return [r.unit for r in rows]


def add(conn: Connection, account_id: str, unit: str, request_id: str | None) -> bool:
    """False if the membership already existed."""
    exists = conn.execute(
        select(unit_membership.c.unit).where(
            unit_membership.c.account_id == account_id, unit_membership.c.unit == unit
        )
    ).first()
    if exists:
        return False
    conn.execute(
        insert(unit_membership).values(
            account_id=account_id, unit=unit, created=now_micros(), request_id=request_id
        )
    )
    return True


def remove(conn: Connection, account_id: str, unit: str) -> bool:
    result = conn.execute(
        delete(unit_membership).where(
            unit_membership.c.account_id == account_id, unit_membership.c.unit == unit
        )
    )
    return result.rowcount == 1


def seed_memberships(engine: Engine, accounts: Iterable[tuple[str, tuple[str, ...]]]) -> int:
    """For `rempart seed` only: (username, units) of the synthetic staff."""
    wanted = {username: units for username, units in accounts if units}
    if not wanted:
        return 0
    added = 0
    with engine.begin() as conn:
        rows = conn.execute(
            select(account.c.id, account.c.username).where(account.c.username.in_(list(wanted)))
        )
        for row in rows.all():
            for unit in wanted[row.username]:
                added += add(conn, row.id, unit, None)
    return added
