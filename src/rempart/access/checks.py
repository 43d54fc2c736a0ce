"""What each request kind checks when it is made (and its executor checks again, because the
world may have changed in between): an unknown account, a taken username, a unit that is not
in the directory, a change of role across the separation of duties, values out of bounds."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from rempart.access import directory, export
from rempart.access import settings as policy_settings
from rempart.access.kinds import (
    AddUnitMembership,
    ChangeRole,
    ChangeSetting,
    CohortExport,
    CreateAccount,
    CreateIntegrationClient,
    EnableAccount,
    GuardSettings,
    LinkPractitioner,
    MoveUnit,
    PruneAudit,
    ResetFactor,
    ResetPassword,
)
from rempart.access.permissions import PATIENT_DATA_TYPES
from rempart.access.roles import Role
from rempart.clock import now_datetime
from rempart.errors import InvalidResource
from rempart.identity import admin
from rempart.store.repository import ResourceStore

ADMINISTRATIVE_ROLES = frozenset({Role.ADMIN.value, Role.SECURITY_OFFICER.value})


def account_row(conn: Connection, account_id: str) -> admin.AccountView:
    found = admin.get_account(conn, account_id)
    if found is None:
        raise InvalidResource(f"no account {account_id}")
    if found.role in (Role.PATIENT.value, Role.INTEGRATION.value):
        raise InvalidResource(f"account {account_id} is not a staff account")
    return found


def in_directory(store: ResourceStore, conn: Connection, ref: str) -> None:
    kind, _, ident = ref.partition("/")
    if not store.exists(conn, kind, ident):
        raise InvalidResource(f"{ref} is not in the hospital directory")


def check(store: ResourceStore, conn: Connection, payload: Any) -> None:
    """Raises InvalidResource if the request cannot make sense."""
    if isinstance(payload, CreateAccount | CreateIntegrationClient) and admin.username_taken(
        conn, payload.username
    ):
        raise InvalidResource(f"the username {payload.username} is taken")
    refs: list[str] = []
    if isinstance(payload, CreateAccount):
        refs = [payload.practitioner or "", *payload.units]
        care_only(payload.role, bool(refs[0] or payload.units), payload.practitioner)
    elif isinstance(payload, ResetPassword | ResetFactor | EnableAccount):
        account_row(conn, payload.account_id)
    elif isinstance(payload, ChangeRole):
        same_side(account_row(conn, payload.account_id).role, payload.role)
    elif isinstance(payload, LinkPractitioner):
        target = account_row(conn, payload.account_id)
        care_only(target.role, True, payload.practitioner)
        refs = [payload.practitioner or ""]
    elif isinstance(payload, AddUnitMembership):
        care_only(account_row(conn, payload.account_id).role, True, None)
        refs = [payload.unit]
    elif isinstance(payload, MoveUnit):
        directory.check_move(store, conn, payload)
    else:
        _check_values(payload)
    for ref in refs:
        if ref:
            in_directory(store, conn, ref)


def _check_values(payload: Any) -> None:
    """The kinds that name no account or unit: their values are checked alone."""
    if isinstance(payload, ChangeSetting):
        policy_settings.check_value(payload.key, payload.value)
    elif isinstance(payload, GuardSettings):
        from rempart.guard.changes import check_guard_values

        check_guard_values(payload.values)
    elif isinstance(payload, PruneAudit) and payload.before >= now_datetime().date():
        raise InvalidResource("prune-audit takes a date in the past")
    elif isinstance(payload, CohortExport):
        _check_export(payload)


def same_side(current: str, wanted: str) -> None:
    """Separation of duties: an account that manages the system never becomes one that cares
    for patients, nor the reverse (a person who changes jobs gets a second account)."""
    if (current in ADMINISTRATIVE_ROLES) != (wanted in ADMINISTRATIVE_ROLES):
        raise InvalidResource(
            f"a {current} account cannot become a {wanted}: separation of duties; create a "
            "separate account for the other job"
        )


def care_only(role: str, placed: bool, practitioner: str | None) -> None:
    """Units and practitioner links are for care accounts: they mean nothing for the others,
    and would only prepare an account for clinical access."""
    if placed and role not in (Role.CLINICIAN.value, Role.SECRETARY.value):
        raise InvalidResource(f"a {role} account belongs to no unit and is no practitioner")
    if practitioner and role != Role.CLINICIAN.value:
        raise InvalidResource("only a clinician account is linked to a practitioner")


def _check_export(payload: CohortExport) -> None:
    unknown = set(payload.types) - PATIENT_DATA_TYPES
    if unknown:
        raise InvalidResource(f"not patient record types: {', '.join(sorted(unknown))}")
    if not payload.query and not payload.patients:
        raise InvalidResource("name the cohort: a query, a list of patients, or both")
    if payload.query:
        export.parse_cohort_query(payload.query)
