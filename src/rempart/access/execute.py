"""What each request kind does once approved.

Each executor checks again what `checks.py` checked when the request was made (an unknown
account, a unit that is not in the directory), because the world may have changed in between.
Nothing here returns a secret to an administrator: one-time codes go to the person concerned,
through the out-of-band notice queue.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from rempart.access import directory, export, membership, notify, relations
from rempart.access import settings as policy_settings
from rempart.access.checks import account_row, care_only, in_directory, same_side
from rempart.access.kinds import (
    AddUnitMembership,
    ChangeRole,
    ChangeSetting,
    CohortExport,
    CreateAccount,
    CreateIntegrationClient,
    EnableAccount,
    ErasePatient,
    GuardSettings,
    LinkPractitioner,
    MoveUnit,
    PlantDecoys,
    PruneAudit,
    ResetFactor,
    ResetPassword,
)
from rempart.access.roles import Role
from rempart.access.tables import access_setting, break_glass
from rempart.audit.log import AuditLog
from rempart.clock import now_micros
from rempart.crypto import seal
from rempart.errors import RempartError
from rempart.identity import admin
from rempart.identity.service import IdentityService
from rempart.store.keyring import Keyring
from rempart.store.repository import ResourceStore


class ExecutionFailed(RempartError):
    status = 409
    code = "business-rule"


@dataclass
class Env:
    engine: Engine
    identity: IdentityService
    store: ResourceStore
    keyring: Keyring
    key: bytes  # the directory data key: seals notices and payloads
    settings: policy_settings.SettingsCache
    audit_log: AuditLog


# ---- execution (after the last approval) --------------------------------------------------


def execute(env: Env, payload: Any, request_id: str, requester: str) -> str:
    """Runs an approved request; the result message (identifiers only)."""
    runner = _RUNNERS.get(type(payload))
    if runner is None:  # pragma: no cover - every kind has a runner (tests pin it)
        raise ExecutionFailed(f"no executor for {type(payload).__name__}")
    return runner(env, payload, request_id, requester)


def _welcome(env: Env, account_id: str, request_id: str, kind: str) -> None:
    """One-time codes for a new account's holder: choose a password, register a factor."""
    enrolment = env.identity.issue_enrolment_code(account_id, by=f"approved request {request_id}")
    with env.engine.begin() as conn:
        code = admin.issue_password_code(conn, account_id, request_id)
        notify.notify_user(
            conn,
            env.key,
            account_id,
            kind,
            {
                "message": "Your rempart account is ready. Set your password with the first "
                "code (POST /access/set-password), then sign in with it and the enrolment code "
                "to register your second factor.",
                "password_code": code,
                "enrolment_code": enrolment,
                "request": request_id,
            },
        )


def _create_account(env: Env, p: CreateAccount, request_id: str, _requester: str) -> str:
    account_id = admin.create_account(
        env.identity,
        username=p.username,
        role=Role(p.role),
        display_name=p.display_name,
        practitioner=p.practitioner,
    )
    with env.engine.begin() as conn:
        for unit in p.units:
            membership.add(conn, account_id, unit, request_id)
    _welcome(env, account_id, request_id, "account-created")
    return f"account {account_id} created; its holder was sent one-time codes"


def _create_integration(
    env: Env, p: CreateIntegrationClient, request_id: str, _requester: str
) -> str:
    account_id = admin.create_account(
        env.identity,
        username=p.username,
        role=Role.INTEGRATION,
        display_name=p.display_name,
        practitioner=None,
    )
    _welcome(env, account_id, request_id, "integration-client-created")
    return f"integration client {account_id} created; its technical contact was sent codes"


def _tell(env: Env, conn: Connection, account_id: str, kind: str, message: str, rid: str) -> None:
    notify.notify_user(conn, env.key, account_id, kind, {"message": message, "request": rid})


def _change_role(env: Env, p: ChangeRole, request_id: str, _requester: str) -> str:
    with env.engine.begin() as conn:
        same_side(account_row(conn, p.account_id).role, p.role)
        admin.set_role(conn, p.account_id, Role(p.role))
        ended = admin.revoke_sessions(env.identity, conn, p.account_id, "role-change")
        _tell(env, conn, p.account_id, "role-changed", f"Your role is now {p.role}.", request_id)
    return f"account {p.account_id} is now {p.role}; {ended} sessions ended"


def _link(env: Env, p: LinkPractitioner, request_id: str, _requester: str) -> str:
    with env.engine.begin() as conn:
        care_only(account_row(conn, p.account_id).role, True, p.practitioner)
        if p.practitioner:
            in_directory(env.store, conn, p.practitioner)
        admin.set_practitioner(conn, p.account_id, p.practitioner)
        admin.revoke_sessions(env.identity, conn, p.account_id, "practitioner-link")
        _tell(
            env,
            conn,
            p.account_id,
            "practitioner-linked",
            f"Your account is now linked to {p.practitioner or 'no practitioner'}.",
            request_id,
        )
    return f"account {p.account_id} linked to {p.practitioner or 'no practitioner'}"


def _add_unit(env: Env, p: AddUnitMembership, request_id: str, _requester: str) -> str:
    with env.engine.begin() as conn:
        care_only(account_row(conn, p.account_id).role, True, None)
        in_directory(env.store, conn, p.unit)
        added = membership.add(conn, p.account_id, p.unit, request_id)
        _tell(env, conn, p.account_id, "unit-added", f"You now belong to {p.unit}.", request_id)
    return f"account {p.account_id} {'added to' if added else 'already in'} {p.unit}"


def _reset_password(env: Env, p: ResetPassword, request_id: str, _requester: str) -> str:
    with env.engine.begin() as conn:
        account_row(conn, p.account_id)
        code = admin.issue_password_code(conn, p.account_id, request_id)
        ended = admin.revoke_sessions(env.identity, conn, p.account_id, "password-reset")
        notify.notify_user(
            conn,
            env.key,
            p.account_id,
            "password-reset",
            {
                "message": "A reset of your password was approved. Choose a new one with this "
                "code (POST /access/set-password). If you did not ask for it, call the "
                "security officer now.",
                "password_code": code,
                "request": request_id,
            },
        )
    return f"password code sent to the holder of {p.account_id}; {ended} sessions ended"


def _reset_factor(env: Env, p: ResetFactor, request_id: str, _requester: str) -> str:
    with env.engine.connect() as conn:
        account_row(conn, p.account_id)
    by = f"approved request {request_id}"
    env.identity.reset_factors(p.account_id, by=by)
    enrolment = env.identity.issue_enrolment_code(p.account_id, by=by)
    with env.engine.begin() as conn:
        notify.notify_user(
            conn,
            env.key,
            p.account_id,
            "factor-reset",
            {
                "message": "A reset of your second factor was approved. Sign in with your "
                "password and this enrolment code to register a new one. If you did not ask "
                "for it, call the security officer now.",
                "enrolment_code": enrolment,
                "request": request_id,
            },
        )
    return f"second factors of {p.account_id} removed; an enrolment code was sent to the holder"


def _enable(env: Env, p: EnableAccount, request_id: str, _requester: str) -> str:
    with env.engine.begin() as conn:
        account_row(conn, p.account_id)
        admin.set_disabled(conn, p.account_id, False)
        _tell(env, conn, p.account_id, "account-enabled", "Your account is enabled.", request_id)
    return f"account {p.account_id} enabled"


def _setting(env: Env, p: ChangeSetting, request_id: str, _requester: str) -> str:
    value = policy_settings.check_value(p.key, p.value)
    now = now_micros()
    with env.engine.begin() as conn:
        done = conn.execute(
            update(access_setting)
            .where(access_setting.c.key == p.key)
            .values(value=str(value), changed=now, request_id=request_id)
        ).rowcount
        if done == 0:
            conn.execute(
                insert(access_setting).values(
                    key=p.key, value=str(value), changed=now, request_id=request_id
                )
            )
    env.settings.invalidate()
    return f"{p.key} = {value}"


def _guard_settings(env: Env, p: GuardSettings, request_id: str, _requester: str) -> str:
    from rempart.guard.changes import apply_guard_values

    return apply_guard_values(env.engine, env.settings, p.values, request_id)


def _plant_decoys(env: Env, p: PlantDecoys, request_id: str, _requester: str) -> str:
    from rempart.guard.changes import plant_decoys

    return plant_decoys(env.engine, env.store, env.keyring, p.count, request_id)


def _erase(env: Env, p: ErasePatient, request_id: str, _requester: str) -> str:
    from rempart.store.shred import shred_patient

    patient = p.patient.removeprefix("Patient/")
    shred_patient(env.engine, env.keyring, patient)
    with env.engine.begin() as conn:
        links = relations.forget_patient(conn, patient)
        # Break-the-glass reasons may describe the patient: they go with the record.
        for grant in conn.execute(
            select(break_glass.c.id, break_glass.c.account_id).where(
                break_glass.c.patient == patient
            )
        ).all():
            aad = f"rempart/break-glass/{grant.id}/{grant.account_id}/{patient}".encode()
            conn.execute(
                update(break_glass)
                .where(break_glass.c.id == grant.id)
                .values(reason_sealed=seal(env.key, b"[erased with the record]", aad))
            )
    return f"{p.patient} erased; {links} care links removed"


def _prune(env: Env, p: PruneAudit, request_id: str, _requester: str) -> str:
    from rempart.audit.retention import prune_before

    cutoff = datetime(p.before.year, p.before.month, p.before.day, tzinfo=UTC)
    result = prune_before(env.audit_log, cutoff, request_id)
    return f"{result.deleted} audit records pruned below position {result.pruned_below}"


def _export(env: Env, p: CohortExport, request_id: str, requester: str) -> str:
    limit = env.settings.current().get(policy_settings.EXPORT_MAX_PATIENTS)
    patients = export.select_cohort(
        env.store, request_id, query_text=p.query, patients=p.patients, limit=limit
    )
    export.freeze(env.engine, request_id, requester, p.types, p.identified, patients)
    with env.engine.begin() as conn:
        _tell(
            env,
            conn,
            requester,
            "export-ready",
            f"Your export '{p.cohort_name}' is approved: GET /access/exports/{request_id}/data "
            "within 24 hours (one download).",
            request_id,
        )
    return f"cohort of {len(patients)} patients ready for its recipient (one download, 24 h)"


_RUNNERS: dict[type, Callable[[Env, Any, str, str], str]] = {
    CreateAccount: _create_account,
    CreateIntegrationClient: _create_integration,
    ChangeRole: _change_role,
    LinkPractitioner: _link,
    AddUnitMembership: _add_unit,
    MoveUnit: lambda env, p, request_id, _requester: directory.move_unit(env.store, p, request_id),
    ResetPassword: _reset_password,
    ResetFactor: _reset_factor,
    EnableAccount: _enable,
    ChangeSetting: _setting,
    GuardSettings: _guard_settings,
    PlantDecoys: _plant_decoys,
    ErasePatient: _erase,
    PruneAudit: _prune,
    CohortExport: _export,
}
