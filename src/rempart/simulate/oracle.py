"""What an account may legitimately see, asked of the running server's own policy in-process.

A leak is data of a patient *beyond* what the attacker could legitimately see. For a clinician
or a front desk that is their care relationships at the time (the policy's scope, evaluated on
the simulated clock), **without** break-the-glass: a grant obtained with a made-up reason is
exactly the abuse being measured. A secretary's exact identity lookups outside their
establishment are not part of it either (they exist for the person at the desk, not for a list
of names). Administrators, security officers and the holder of a stolen database file see no
patient legitimately; a patient account, their own record.
"""

from __future__ import annotations

import dataclasses

from sqlalchemy import Engine, select

from rempart.access.pdp import Policy, Principal
from rempart.access.roles import Role
from rempart.access.scope import Fixed, Relationships
from rempart.access.tables import care_link
from rempart.identity.tables import account


class ScopeOracle:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._policy = Policy(engine)

    def principal(self, username: str) -> Principal:
        with self._engine.connect() as conn:
            row = conn.execute(select(account).where(account.c.username == username)).one()
        return Principal(row.id, row.username, Role(row.role), row.practitioner, row.patient)

    def account_id(self, username: str) -> str:
        return self.principal(username).account_id

    def legitimate(self, username: str) -> frozenset[str]:
        """The patients this account's care relationships cover now (simulated clock)."""
        who = self.principal(username)
        scope = self._policy.decide(who).patients
        if isinstance(scope, Fixed):
            return frozenset(scope.patients)
        if not isinstance(scope, Relationships):
            return frozenset()  # Nobody: administrators, security officers
        scope = dataclasses.replace(scope, break_glass=False)
        condition = scope.where(care_link.c.patient)
        query = select(care_link.c.patient).distinct()
        if condition is not None:
            query = query.where(condition)
        with self._engine.connect() as conn:
            return frozenset(str(p) for p in conn.execute(query).scalars())


@dataclasses.dataclass
class Legitimate:
    """The union of an attacker's legitimate scope as sampled during the attack."""

    username: str
    patients: set[str] = dataclasses.field(default_factory=set)

    def sample(self, oracle: ScopeOracle) -> None:
        self.patients |= oracle.legitimate(self.username)
