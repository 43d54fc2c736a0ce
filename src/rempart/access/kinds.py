"""Every change that could open clinical data, as a four-eyes request kind.

Each kind says who may ask, who must approve, what the request is checked against when it is
made, and what runs once it is approved. `requests.py` runs the lifecycle; this file is the
list a reviewer reads to know what a second approver stands between.

- create-account, change-role, link-practitioner, add-unit-membership, move-unit,
  reset-password, reset-factor, enable-account, create-integration-client: asked by an
  administrator, approved by another administrator;
- change-setting, guard-settings, plant-decoys, erase-patient, prune-audit: asked by an
  administrator or a security officer, approved by an administrator and a security officer;
- export: asked by the clinician who will receive it, approved by an administrator and a
  security officer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rempart.access.roles import Role

_ID = r"[A-Za-z0-9\-.]{1,64}"
AccountId = Annotated[str, Field(pattern=r"^[A-Za-z0-9\-]{1,36}$")]
Username = Annotated[str, Field(min_length=1, max_length=150, pattern=r"^[A-Za-z0-9._@\-]+$")]
StaffRole = Literal["admin", "clinician", "secretary", "security_officer"]
PractitionerRef = Annotated[str, Field(pattern=rf"^Practitioner/{_ID}$")]
UnitRef = Annotated[str, Field(pattern=rf"^(Organization|Location)/{_ID}$")]
PatientRef = Annotated[str, Field(pattern=rf"^Patient/{_ID}$")]
DisplayName = Annotated[str, Field(min_length=1, max_length=200)]


class _Kind(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CreateAccount(_Kind):
    kind: Literal["create-account"]
    username: Username
    role: StaffRole
    display_name: DisplayName
    practitioner: PractitionerRef | None = None
    units: list[UnitRef] = Field(default_factory=list, max_length=20)


class ChangeRole(_Kind):
    kind: Literal["change-role"]
    account_id: AccountId
    role: StaffRole


class LinkPractitioner(_Kind):
    kind: Literal["link-practitioner"]
    account_id: AccountId
    practitioner: PractitionerRef | None


class AddUnitMembership(_Kind):
    kind: Literal["add-unit-membership"]
    account_id: AccountId
    unit: UnitRef


class MoveUnit(_Kind):
    """A unit's new parent: an Organization's `partOf`; a Location's `partOf` (a Location) or
    `managingOrganization` (an Organization). None: it becomes a top-level unit."""

    kind: Literal["move-unit"]
    unit: UnitRef
    parent: UnitRef | None


class ResetPassword(_Kind):
    kind: Literal["reset-password"]
    account_id: AccountId


class ResetFactor(_Kind):
    kind: Literal["reset-factor"]
    account_id: AccountId


class EnableAccount(_Kind):
    kind: Literal["enable-account"]
    account_id: AccountId


class CreateIntegrationClient(_Kind):
    kind: Literal["create-integration-client"]
    username: Username
    display_name: DisplayName


class ChangeSetting(_Kind):
    kind: Literal["change-setting"]
    key: Annotated[str, Field(min_length=1, max_length=64)]
    value: int


class GuardSettings(_Kind):
    kind: Literal["guard-settings"]
    values: Annotated[
        dict[Annotated[str, Field(pattern=r"^guard\.[a-z0-9_.\-]{1,58}$")], int],
        Field(min_length=1, max_length=40),
    ]


class PlantDecoys(_Kind):
    kind: Literal["plant-decoys"]
    count: Annotated[int, Field(ge=1, le=100)]


class ErasePatient(_Kind):
    kind: Literal["erase-patient"]
    patient: PatientRef
    legal_basis: Annotated[str, Field(min_length=10, max_length=500)]


class PruneAudit(_Kind):
    kind: Literal["prune-audit"]
    before: date


class CohortExport(_Kind):
    kind: Literal["export"]
    cohort_name: Annotated[str, Field(min_length=3, max_length=100)]
    purpose: Annotated[str, Field(min_length=10, max_length=500)]
    query: Annotated[str, Field(min_length=3, max_length=500)] | None = None
    patients: list[PatientRef] = Field(default_factory=list, max_length=10_000)
    types: list[str] = Field(min_length=1, max_length=20)
    identified: bool = False  # pseudonymised unless the approved request says otherwise


AdminRequest = Annotated[
    CreateAccount
    | ChangeRole
    | LinkPractitioner
    | AddUnitMembership
    | MoveUnit
    | ResetPassword
    | ResetFactor
    | EnableAccount
    | CreateIntegrationClient
    | ChangeSetting
    | GuardSettings
    | PlantDecoys
    | ErasePatient
    | PruneAudit,
    Field(discriminator="kind"),
]
AnyRequest = AdminRequest | CohortExport


@dataclass(frozen=True)
class Spec:
    model: type[_Kind]
    requesters: frozenset[Role]
    needs: tuple[Role, ...]  # one approval per role, each by someone else
    summary: Callable[[Any], str]
    target: Callable[[Any], str | None] = lambda _p: None  # the account acted on
    notify_target: bool = False  # the holder of `target` is told (resets, role changes)


ADMIN_ONLY = frozenset({Role.ADMIN})
OFFICERS = frozenset({Role.ADMIN, Role.SECURITY_OFFICER})
TWO_ADMINS = (Role.ADMIN,)
ADMIN_AND_OFFICER = (Role.ADMIN, Role.SECURITY_OFFICER)


def _account(p: Any) -> str | None:
    return str(p.account_id)


SPECS: dict[str, Spec] = {
    "create-account": Spec(
        CreateAccount,
        ADMIN_ONLY,
        TWO_ADMINS,
        lambda p: (
            f"create {p.role} account {p.username}"
            + (f" linked to {p.practitioner}" if p.practitioner else "")
            + (f" in {', '.join(p.units)}" if p.units else "")
        ),
    ),
    "change-role": Spec(
        ChangeRole,
        ADMIN_ONLY,
        TWO_ADMINS,
        lambda p: f"make account {p.account_id} a {p.role}",
        _account,
        True,
    ),
    "link-practitioner": Spec(
        LinkPractitioner,
        ADMIN_ONLY,
        TWO_ADMINS,
        lambda p: f"link account {p.account_id} to {p.practitioner or 'no practitioner'}",
        _account,
        True,
    ),
    "add-unit-membership": Spec(
        AddUnitMembership,
        ADMIN_ONLY,
        TWO_ADMINS,
        lambda p: f"add account {p.account_id} to {p.unit}",
        _account,
        True,
    ),
    "move-unit": Spec(
        MoveUnit,
        ADMIN_ONLY,
        TWO_ADMINS,
        lambda p: (
            f"move {p.unit} under {p.parent or 'nothing'} (the members of its new parents reach "
            "the patients staying there)"
        ),
    ),
    "reset-password": Spec(
        ResetPassword,
        ADMIN_ONLY,
        TWO_ADMINS,
        lambda p: f"reset the password of account {p.account_id}",
        _account,
        True,
    ),
    "reset-factor": Spec(
        ResetFactor,
        ADMIN_ONLY,
        TWO_ADMINS,
        lambda p: f"reset the second factors of account {p.account_id}",
        _account,
        True,
    ),
    "enable-account": Spec(
        EnableAccount,
        ADMIN_ONLY,
        TWO_ADMINS,
        lambda p: f"re-enable account {p.account_id}",
        _account,
        True,
    ),
    "create-integration-client": Spec(
        CreateIntegrationClient,
        ADMIN_ONLY,
        TWO_ADMINS,
        lambda p: f"create integration client {p.username} (writes results, reads nothing)",
    ),
    "change-setting": Spec(
        ChangeSetting,
        OFFICERS,
        ADMIN_AND_OFFICER,
        lambda p: f"set {p.key} to {p.value}",
    ),
    "guard-settings": Spec(
        GuardSettings,
        OFFICERS,
        ADMIN_AND_OFFICER,
        lambda p: "set guard " + ", ".join(f"{k} to {v}" for k, v in sorted(p.values.items())),
    ),
    "plant-decoys": Spec(
        PlantDecoys,
        OFFICERS,
        ADMIN_AND_OFFICER,
        lambda p: f"plant {p.count} decoy patients (the guard locks whoever opens one)",
    ),
    "erase-patient": Spec(
        ErasePatient,
        OFFICERS,
        ADMIN_AND_OFFICER,
        lambda p: f"erase (crypto-shred) {p.patient}: {p.legal_basis}",
    ),
    "prune-audit": Spec(
        PruneAudit,
        OFFICERS,
        ADMIN_AND_OFFICER,
        lambda p: f"prune audit records older than {p.before.isoformat()}",
    ),
    "export": Spec(
        CohortExport,
        frozenset({Role.CLINICIAN}),
        ADMIN_AND_OFFICER,
        lambda p: (
            f"export cohort '{p.cohort_name}' ({', '.join(p.types)}; "
            + ("IDENTIFIED" if p.identified else "pseudonymised")
            + f") for: {p.purpose}"
            + (f"; query {p.query}" if p.query else "")
            + (f"; {len(p.patients)} listed patients" if p.patients else "")
        ),
    ),
}


def details(payload: _Kind) -> dict[str, Any]:
    """What approvers see of a request: its fields, with a listed cohort as a count."""
    shown = payload.model_dump(mode="json")
    if isinstance(shown.get("patients"), list):
        shown["patients"] = len(shown["patients"])
    return shown
