"""Accounts, second factors, pending challenges, sessions and sign-in throttling.

Secrets are never stored usable: passwords as Argon2id hashes; session, challenge, recovery and
enrolment tokens as SHA-256 digests (they are 256-bit random, so a fast hash is enough); the
account's private profile (display name, TOTP secret) sealed under the directory data key, so a
database copy holds no patient's name behind a patient account. WebAuthn public keys are public.

`account`, `mfa_challenge` and `session` are created by revision 0001; the rest by 0002_identity.
The account-administration code (`identity/admin.py`) relies on these names: keep them stable.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    false,
)

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
    # RPPS number (11 digits) of a professional: how a Pro Santé Connect login finds its account.
    Column("rpps", String(11), nullable=True, unique=True),
    # Set after 100 failed sign-ins (or by a security officer); only a security officer clears it.
    Column("locked_at", BigInteger, nullable=True),
    Column("password_changed", BigInteger, nullable=True),
)

mfa_challenge = Table(
    "mfa_challenge",
    metadata,
    Column("token_hash", LargeBinary(32), primary_key=True),
    Column("account_id", String(36), nullable=False),
    Column("expires", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("used", Boolean, nullable=False, default=False),
    # "password" or "oidc:<provider>": what proved the first factor.
    Column("first_factor", String(60), nullable=False, default="password"),
    # The WebAuthn challenge issued with this login, if the account has a security key.
    Column("webauthn_challenge", LargeBinary(64), nullable=True),
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
    # When this session last passed a second factor: step-up checks read it.
    Column("factor_at", BigInteger, nullable=False, default=0),
    Column("factors", String(80), nullable=False, default=""),  # e.g. "password+webauthn"
    # The account held a security key at sign-in: for this session a fresh factor is a fresh
    # key (`key_at`: when it was last presented here, 0 if never; migration 0007).
    Column("keyed", Boolean, nullable=False, default=False, server_default=false()),
    Column("key_at", BigInteger, nullable=False, default=0, server_default="0"),
    # "full", or "enrol": a session opened with an enrolment code may only register a factor.
    Column("scope", String(16), nullable=False, default="full"),
    Column("revoked_at", BigInteger, nullable=True),
    Column("revoked_reason", String(40), nullable=True),
)

webauthn_credential = Table(
    "webauthn_credential",
    metadata,
    Column("credential_id", LargeBinary(1024), primary_key=True),
    Column("account_id", String(36), nullable=False, index=True),
    Column("public_key", LargeBinary, nullable=False),  # COSE key
    # The authenticator's signature counter: an assertion that does not move it forward comes
    # from a cloned key (or a replay), and the credential is disabled.
    Column("sign_count", BigInteger, nullable=False),
    Column("aaguid", String(36), nullable=False),
    Column("transports", String(200), nullable=False, default=""),
    Column("label", String(100), nullable=False, default=""),
    Column("created", BigInteger, nullable=False),
    Column("last_used", BigInteger, nullable=True),
    Column("disabled_at", BigInteger, nullable=True),
)

# A challenge for a WebAuthn registration or step-up (a login's lives in mfa_challenge).
webauthn_challenge = Table(
    "webauthn_challenge",
    metadata,
    Column("challenge", LargeBinary(64), primary_key=True),
    Column("account_id", String(36), nullable=False),
    Column("session_id", String(36), nullable=False),
    Column("purpose", String(16), nullable=False),  # "register" | "step-up"
    Column("expires", BigInteger, nullable=False),
    Column("used", Boolean, nullable=False, default=False),
)

recovery_code = Table(
    "recovery_code",
    metadata,
    Column("account_id", String(36), primary_key=True),
    Column("digest", LargeBinary(32), primary_key=True),
    Column("created", BigInteger, nullable=False),
    Column("used_at", BigInteger, nullable=True),
)

# A one-time code given by a security officer (or `rempart identity enrol`), so an account that
# has no usable second factor can register one; without it a password alone registers nothing.
enrolment_code = Table(
    "enrolment_code",
    metadata,
    Column("digest", LargeBinary(32), primary_key=True),
    Column("account_id", String(36), nullable=False, index=True),
    Column("issued_by", String(150), nullable=False),
    Column("expires", BigInteger, nullable=False),
    Column("used_at", BigInteger, nullable=True),
)

# Consecutive sign-in failures per username (known or not, so the answers never tell which).
login_failure = Table(
    "login_failure",
    metadata,
    Column("subject", LargeBinary(32), primary_key=True),  # SHA-256 of the folded username
    Column("failures", Integer, nullable=False),
    Column("last_failure", BigInteger, nullable=False),
    Column("next_allowed", BigInteger, nullable=False),
    Column("locked", Boolean, nullable=False, default=False),
)

# The moving windows per client address and network: one row per attempt or failure.
throttle_event = Table(
    "throttle_event",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("scope", String(80), nullable=False),  # "ip:<addr>" or "net:<cidr>"
    Column("kind", String(1), nullable=False),  # a = attempt, f = failure, x = alert raised
    Column("at", BigInteger, nullable=False),
    Column("subject", LargeBinary(8), nullable=True),  # short username digest, for counts
)
Index("ix_throttle_event_scope", throttle_event.c.scope, throttle_event.c.kind, throttle_event.c.at)
Index("ix_throttle_event_at", throttle_event.c.at)

# An OpenID Connect authorization in flight: state, nonce and PKCE verifier, for one use.
oidc_flow = Table(
    "oidc_flow",
    metadata,
    Column("state_hash", LargeBinary(32), primary_key=True),
    Column("provider", String(40), nullable=False),
    Column("nonce", String(64), nullable=False),
    Column("code_verifier", String(128), nullable=False),
    Column("expires", BigInteger, nullable=False),
    Column("used", Boolean, nullable=False, default=False),
)
