"""Ten single-use recovery codes per account, stored as SHA-256 digests.

Each code is 80 random bits (16 Crockford base32 characters, shown in groups of four). That is
far beyond guessing under the sign-in throttle, so a fast hash is enough: a stolen database
gives no usable code. Using one burns it atomically (`UPDATE ... WHERE used_at IS NULL`).
"""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import Connection, delete, func, insert, select, update

from rempart.identity.tables import recovery_code

COUNT = 10
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford: no I, L, O, U
_GROUPS = 4


def _normalise(code: str) -> str:
    """Dashes, spaces and case do not matter; O/I/L read as 0/1/1, as Crockford intends."""
    cleaned = code.upper().replace("-", "").replace(" ", "")
    return cleaned.translate(str.maketrans("OIL", "011"))


def _digest(account_id: str, code: str) -> bytes:
    return hashlib.sha256(f"rempart/recovery/{account_id}/{_normalise(code)}".encode()).digest()


def new_code() -> str:
    raw = "".join(secrets.choice(_ALPHABET) for _ in range(4 * _GROUPS))
    return "-".join(raw[i : i + 4] for i in range(0, len(raw), 4))


def replace_codes(conn: Connection, account_id: str, now: int) -> list[str]:
    """A fresh set of ten; every earlier code stops working."""
    codes = [new_code() for _ in range(COUNT)]
    conn.execute(delete(recovery_code).where(recovery_code.c.account_id == account_id))
    conn.execute(
        insert(recovery_code),
        [
            {"account_id": account_id, "digest": _digest(account_id, c), "created": now}
            for c in codes
        ],
    )
    return codes


def burn(conn: Connection, account_id: str, code: str, now: int) -> bool:
    if len(_normalise(code)) != 4 * _GROUPS:
        return False
    return (
        conn.execute(
            update(recovery_code)
            .where(
                recovery_code.c.account_id == account_id,
                recovery_code.c.digest == _digest(account_id, code),
                recovery_code.c.used_at.is_(None),
            )
            .values(used_at=now)
        ).rowcount
        == 1
    )


def remaining(conn: Connection, account_id: str) -> int:
    return int(
        conn.execute(
            select(func.count()).where(
                recovery_code.c.account_id == account_id, recovery_code.c.used_at.is_(None)
            )
        ).scalar_one()
    )
