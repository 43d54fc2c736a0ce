"""A new account in two steps: `prepare_account` applies the password policy and computes the
Argon2id hash (CPU only, no database), `store_account` inserts it.

Why two: a bulk seed hashes its staff's passwords (~0.2 CPU s each) while its load runs, on the
cores the load leaves idle, and inserts the accounts once the load's transactions are done (on
SQLite an insert in the middle would wait behind them for the single write lock)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import Engine, insert

from rempart.access.roles import Role
from rempart.errors import InvalidResource
from rempart.identity.core import Core
from rempart.identity.password_policy import PasswordOwner, check_password
from rempart.identity.tables import account


@dataclass(frozen=True)
class NewAccount:
    """A checked account whose password is already hashed; `prepare_account` makes one."""

    username: str
    password_hash: str
    role: Role
    profile: dict[str, str]
    practitioner: str | None
    patient: str | None
    rpps: str | None


def prepare_account(
    core: Core,
    *,
    username: str,
    password: str,
    role: Role,
    display_name: str,
    totp_secret: str | None = None,
    practitioner: str | None = None,
    patient: str | None = None,
    rpps: str | None = None,
) -> NewAccount:
    if not username or len(username) > 150:
        raise InvalidResource("a username is 1 to 150 characters")
    if rpps is not None and not (rpps.isdigit() and len(rpps) == 11):
        raise InvalidResource("an RPPS number is 11 digits")
    check_password(password, PasswordOwner(username, display_name))
    profile = {"display_name": display_name}
    if totp_secret:
        profile["totp_secret"] = totp_secret
    return NewAccount(
        username=username,
        password_hash=core.passwords.hash(password),
        role=role,
        profile=profile,
        practitioner=practitioner,
        patient=patient,
        rpps=rpps,
    )


def store_account(core: Core, engine: Engine, new: NewAccount) -> str:
    """Inserts the account; its id."""
    account_id = str(uuid.uuid4())
    now = core.clock()
    with engine.begin() as conn:
        conn.execute(
            insert(account).values(
                id=account_id,
                username=new.username,
                password_hash=new.password_hash,
                role=new.role.value,
                practitioner=new.practitioner,
                patient=new.patient,
                rpps=new.rpps,
                profile_sealed=core.seal_profile(account_id, new.profile),
                totp_last_step=0,
                created=now,
                password_changed=now,
                disabled=False,
            )
        )
    return account_id
