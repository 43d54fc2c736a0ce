"""Accounts, pending second-factor challenges and sessions.

Secrets are never stored usable: passwords as Argon2id hashes, session and challenge tokens as
SHA-256 digests, and the account's private profile (display name, TOTP secret) sealed under the
directory data key, so a database copy holds no patient's name behind a patient account.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Integer, LargeBinary, String, Table

from rempart.store.tables import metadata

account = Table(
    "account",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("username", String(150), nullable=False, unique=True),
    Column("password_hash", String(200), nullable=False),
    Column("role", String(32), nullable=False),
    Column("practitioner", String(80), nullable=True),
    Column("patient", String(80), nullable=True),
    Column("profile_sealed", LargeBinary, nullable=False),
    # The last TOTP time step accepted: a code of that step or earlier is never taken again.
    Column("totp_last_step", BigInteger, nullable=False, default=0),
    Column("created", BigInteger, nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
)

mfa_challenge = Table(
    "mfa_challenge",
    metadata,
    Column("token_hash", LargeBinary(32), primary_key=True),
    Column("account_id", String(36), nullable=False),
    Column("expires", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("used", Boolean, nullable=False, default=False),
)

session = Table(
    "session",
    metadata,
    Column("token_hash", LargeBinary(32), primary_key=True),
    Column("id", String(36), nullable=False, unique=True),
    Column("account_id", String(36), nullable=False, index=True),
    Column("created", BigInteger, nullable=False),
    Column("expires", BigInteger, nullable=False),
    Column("last_seen", BigInteger, nullable=False),
    Column("revoked", Boolean, nullable=False, default=False),
)
