"""The guard's tables: its state is in the database, so every server process counts the same
accesses and enforces the same containments, and all of it survives a restart.

- `guard_touch`: one row per (session, patient) access at most once a minute per process, per
  denial, per miss (404/410) and per search: what the sliding windows count. Opaque ids only.
- `guard_daily`: per account and local day, the distinct patients reached and the hours active
  (a 24-bit mask): the account's own baseline and its peer group's (same role and unit).
- `guard_decoy`: decoy (honeytoken) patients, as HMAC tags under the guard's data key only, so
  no one can list them from the database.
- `guard_containment`: every step-up, suspension and lock the guard imposed, and who released
  it, with the written reason.
- `guard_fired`: when a signal last alerted for a session or account (alerts are not repeated
  for every request of one episode).
- `guard_reset`: where counting restarts for an account once a security officer released it.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
)

from rempart.store.tables import metadata

guard_touch = Table(
    "guard_touch",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", String(64), nullable=False),
    Column("session_id", String(64), nullable=False),
    # "read" | "bg" (through a break-the-glass grant) | "denied" | "missing" | "search"
    Column("kind", String(8), nullable=False),
    Column("patient", String(64), nullable=True),
    Column("at", BigInteger, nullable=False),  # microseconds since the epoch, UTC
)
Index("ix_guard_touch_account_at", guard_touch.c.account_id, guard_touch.c.at)
Index("ix_guard_touch_at", guard_touch.c.at)

guard_daily = Table(
    "guard_daily",
    metadata,
    Column("account_id", String(64), primary_key=True),
    Column("day", Integer, primary_key=True),  # local days since 1970-01-01
    Column("peer", String(120), nullable=False),  # role, and unit when the account has one
    Column("patients", Integer, nullable=False),
    Column("hours", Integer, nullable=False),  # bit h set: active during local hour h
)
Index("ix_guard_daily_peer_day", guard_daily.c.peer, guard_daily.c.day)

guard_decoy = Table(
    "guard_decoy",
    metadata,
    Column("tag", LargeBinary(16), primary_key=True),
    Column("planted", BigInteger, nullable=False),
    Column("origin", String(64), nullable=False),  # "seed" or the approved request's id
)

guard_containment = Table(
    "guard_containment",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("at", BigInteger, nullable=False),
    Column("account_id", String(64), nullable=False),
    Column("session_id", String(64), nullable=True),
    Column("level", String(16), nullable=False),  # "step-up" | "suspend" | "lock"
    Column("signal", String(32), nullable=False),
    Column("message", String(500), nullable=False),
    Column("released_at", BigInteger, nullable=True),
    Column("released_by", String(64), nullable=True),
    Column("released_reason", String(500), nullable=True),
)
Index("ix_guard_containment_account", guard_containment.c.account_id, guard_containment.c.at)
Index("ix_guard_containment_open", guard_containment.c.level, guard_containment.c.released_at)

guard_fired = Table(
    "guard_fired",
    metadata,
    Column("scope", String(80), primary_key=True),  # "session:<id>" or "account:<id>"
    Column("signal", String(32), primary_key=True),
    Column("at", BigInteger, nullable=False),
)

guard_reset = Table(
    "guard_reset",
    metadata,
    Column("account_id", String(64), primary_key=True),
    Column("since", BigInteger, nullable=False),
)
