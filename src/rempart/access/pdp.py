"""The policy decision point: the one place that decides who reaches which patient data."""

from __future__ import annotations

from dataclasses import dataclass

from rempart.access.decision import _ISSUER, Decision
from rempart.access.roles import ALL_TYPES, READ, WRITE, Role


@dataclass(frozen=True)
class Principal:
    """Who is asking, as authentication established it."""

    account_id: str
    username: str
    role: Role
    practitioner: str | None  # "Practitioner/<id>"
    patient: str | None  # "Patient/<id>"
    session_id: str | None = None
    # When this session last passed a second factor (microseconds, UTC): step-up checks use it.
    factor_at: int = 0


class Policy:
    """The policy decision point as the services hold it. It will need the database (care
    relationships, break-the-glass grants), so it is an object built once in `wiring.py`."""

    def decide(self, principal: Principal) -> Decision:
        return decide(principal)


def decide(principal: Principal) -> Decision:
    """The decision for a request by `principal`; narrowed further by the store per resource."""
    role = principal.role
    if role is Role.PATIENT:
        if principal.patient is None or not principal.patient.startswith("Patient/"):
            return _nothing(principal, "patient account not linked to a record")
        own = principal.patient.removeprefix("Patient/")
        return Decision(
            principal.account_id,
            role.value,
            READ[role],
            WRITE[role],
            frozenset({own}),
            "own record",
            _ISSUER,
        )
    if role in (Role.ADMIN, Role.SECURITY_OFFICER):
        # An empty patient set: even a directory-type read cannot carry a patient's data.
        return Decision(
            principal.account_id,
            role.value,
            READ[role],
            WRITE[role],
            frozenset(),
            "no clinical permission (separation of duties)",
            _ISSUER,
        )
    return Decision(
        principal.account_id,
        role.value,
        READ[role],
        WRITE[role],
        None,
        "interim rule: staff reach every patient until care relationships land (issue #4)",
        _ISSUER,
    )


def system_decision(reason: str) -> Decision:
    """For the local operator's bulk commands (`seed`, `import`), which run with the key file."""
    return Decision("system", "system", ALL_TYPES, ALL_TYPES, None, reason, _ISSUER)


def _nothing(principal: Principal, reason: str) -> Decision:
    return Decision(
        principal.account_id,
        principal.role.value,
        frozenset(),
        frozenset(),
        frozenset(),
        reason,
        _ISSUER,
    )
