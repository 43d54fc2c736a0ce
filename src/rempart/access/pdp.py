"""The policy decision point: the one place that decides who reaches which patient data.

`Policy.decide(principal)` is called once per request. It costs no query: the role gives the
permissions and types (`roles.py`), the settings come from a cache refreshed every few seconds,
and the patient scope is a SQL question that the store asks on the row it is about to open
(`scope.py`). There is no parameter, setting or role that widens a decision beyond this: no
"log in as", no bypass switch, in production or anywhere else.

`system_decision` is for the local operator's bulk commands only (`seed`, `import`), which run
on the server with the key file and could decrypt the database anyway; nothing reachable over
HTTP calls it (`tests/unit/access/test_access_no_bypass.py` pins that).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import Engine

from rempart.access import relations
from rempart.access.decision import _ISSUER, Decision
from rempart.access.permissions import ALL_TYPES, DIRECTORY_TYPES, Permission
from rempart.access.roles import PERMISSIONS, READ, WRITE, Role
from rempart.access.scope import Cohort, Everyone, Fixed, Nobody, PatientScope, Relationships
from rempart.access.settings import DEFAULTS, PolicySettings, SettingsCache
from rempart.access.views import CLINICAL_ELEMENTS
from rempart.clock import now_micros


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
    # For a session of an account holding a security key (`keyed`), when it last presented
    # the key: a TOTP code does not make such a session fresh.
    factor_at: int = 0
    keyed: bool = False

    def may(self, permission: Permission) -> bool:
        return permission in PERMISSIONS[self.role]


class Policy:
    """The policy decision point as the services hold it (built once in `wiring.py`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.settings = SettingsCache(engine)

    def decide(self, principal: Principal) -> Decision:
        return decide(principal, self.settings.current())


def decide(principal: Principal, settings: PolicySettings = DEFAULTS) -> Decision:
    """The decision for a request by `principal`; the store narrows it per row."""
    role = principal.role
    perms = PERMISSIONS[role]
    account_ref = f"Account/{principal.account_id}"
    now = now_micros()
    if role is Role.PATIENT:
        own = _own_record(principal)
        scope: PatientScope = (
            Fixed(frozenset({own}), "own record") if own else Nobody("account not linked")
        )
        return _issue(principal, scope, scope.describe())
    if role is Role.CLINICIAN:
        scope = Relationships(
            account_id=principal.account_id,
            practitioner=_practitioner(principal),
            personal=(relations.PARTICIPANT, relations.TEAM, relations.GP),
            places=(relations.STAY,),
            break_glass=Permission.ACCESS_BREAK_GLASS_CREATE in perms,
            since=now - settings.care_window_micros,
            now=now,
            label="care relationships",
        )
        return _issue(principal, scope, "care relationship", registrant=account_ref)
    if role is Role.SECRETARY:
        scope = Relationships(
            account_id=principal.account_id,
            practitioner=None,
            personal=(),
            places=(relations.STAY, relations.VISIT),
            break_glass=False,
            since=now - settings.care_window_micros,
            now=now,
            label="stays and appointments in this account's establishment",
            # The front desk admits: it finds a walk-in by exact identity traits, then records
            # the stay or appointment, which brings the patient in. Clinicians do not (scope.py).
            admissions=True,
        )
        return _issue(
            principal,
            scope,
            "administrative access within the establishment",
            registrant=account_ref,
            hidden=CLINICAL_ELEMENTS,
            identity_lookup=Permission.FHIR_PATIENT_LOOKUP in perms,
        )
    if role is Role.INTEGRATION:
        return _issue(
            principal,
            Nobody("integration clients read no patient data"),
            "integration client: writes results, reads none",
            write_patients=Everyone("integration client result feed"),
        )
    # Administrators and security officers: an empty patient scope, whatever else they hold.
    return _issue(principal, Nobody("no clinical permission"), "separation of duties")


def system_decision(reason: str) -> Decision:
    """For the local operator's bulk commands (`seed`, `import`), which run with the key file."""
    everyone = Everyone(reason)
    return Decision("system", "system", ALL_TYPES, ALL_TYPES, everyone, reason, _ISSUER)


def export_decision(export_id: str, recipient: str, types: frozenset[str]) -> Decision:
    """Reads of one approved cohort export, for its recipient's single download."""
    return Decision(
        recipient,
        "export",
        types,
        frozenset(),
        Cohort(export_id),
        f"approved cohort export {export_id}",
        _ISSUER,
    )


def directory_decision(request_id: str) -> Decision:
    """Reads and writes of the hospital directory by an approved request's executor (a unit
    moved); no patient at all."""
    reason = f"approved request {request_id}"
    nobody = Nobody(reason)
    return Decision(
        "system", "directory", DIRECTORY_TYPES, DIRECTORY_TYPES, nobody, reason, _ISSUER
    )


def cohort_selection_decision(request_id: str, res_type: str) -> Decision:
    """Finds the compartments a cohort definition matches, when its export is approved.

    It may read the one type the definition searches, in every compartment: the store only
    matches blind-index digests for it (a cohort definition with exact post-filters is refused
    before this is used), and the ids found go to `export_member`, never to a person.
    """
    reason = f"cohort selection for approved request {request_id}"
    return Decision(
        "system", "export", frozenset({res_type}), frozenset(), Everyone(reason), reason, _ISSUER
    )


def _issue(
    principal: Principal,
    scope: PatientScope,
    reason: str,
    *,
    write_patients: PatientScope | None = None,
    registrant: str | None = None,
    hidden: Mapping[str, frozenset[str]] | None = None,
    identity_lookup: bool = False,
) -> Decision:
    role = principal.role
    return Decision(
        principal.account_id,
        role.value,
        READ[role],
        WRITE[role],
        scope,
        reason,
        _ISSUER,
        write_patients=write_patients,
        hidden=hidden or {},
        identity_lookup=identity_lookup,
        registrant=registrant,
    )


def _own_record(principal: Principal) -> str | None:
    ref = principal.patient
    if ref is None or not ref.startswith("Patient/"):
        return None
    return ref.removeprefix("Patient/") or None


def _practitioner(principal: Principal) -> str | None:
    ref = principal.practitioner
    return ref if ref is not None and ref.startswith("Practitioner/") else None
