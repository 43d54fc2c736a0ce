"""Second factors of the signed-in account: list them, add TOTP, a security key (WebAuthn) or a
new set of recovery codes. Each change needs a recent second factor (POST /auth/step-up) or a
session opened with an enrolment code, and signs the account out of its other sessions."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from rempart.api.auth_deps import FactorPrincipalDep, JsonDep, parse
from rempart.api.deps import ContextDep, ServicesDep

router = APIRouter(prefix="/auth/factors", tags=["authentication"])


class TotpConfirm(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: Annotated[str, Field(min_length=1, max_length=16)]


class KeyRegistration(BaseModel):
    model_config = ConfigDict(extra="forbid")
    credential: Annotated[dict[str, Any], Field(max_length=16)]
    label: Annotated[str, Field(max_length=100)] = "security key"


@router.get("")
async def factors(svc: ServicesDep, who: FactorPrincipalDep) -> dict[str, Any]:
    return await run_in_threadpool(svc.identity.factors.summary, who)


@router.post("/totp")
async def totp_begin(svc: ServicesDep, who: FactorPrincipalDep) -> dict[str, str]:
    """A new secret for an authenticator app; active once confirmed with its first code."""
    enrolment = await run_in_threadpool(svc.identity.factors.totp_begin, who)
    return {"secret": enrolment.secret, "otpauth_uri": enrolment.uri}


@router.post("/totp/confirm")
async def totp_confirm(
    raw: JsonDep, svc: ServicesDep, who: FactorPrincipalDep, ctx: ContextDep
) -> dict[str, bool]:
    body = parse(TotpConfirm, raw)
    await run_in_threadpool(svc.identity.factors.totp_confirm, who, body.code, ctx)
    return {"enrolled": True}


@router.post("/webauthn/options")
async def webauthn_options(svc: ServicesDep, who: FactorPrincipalDep) -> dict[str, Any]:
    """PublicKeyCredentialCreationOptions for navigator.credentials.create()."""
    return await run_in_threadpool(svc.identity.factors.webauthn_begin, who)


@router.post("/webauthn")
async def webauthn_register(
    raw: JsonDep, svc: ServicesDep, who: FactorPrincipalDep, ctx: ContextDep
) -> dict[str, bool]:
    body = parse(KeyRegistration, raw)
    await run_in_threadpool(
        svc.identity.factors.webauthn_finish, who, body.credential, body.label, ctx
    )
    return {"enrolled": True}


@router.post("/recovery-codes")
async def recovery_codes(
    svc: ServicesDep, who: FactorPrincipalDep, ctx: ContextDep
) -> dict[str, list[str]]:
    """Ten single-use codes, shown this once; any earlier set stops working."""
    codes = await run_in_threadpool(svc.identity.factors.new_recovery_codes, who, ctx)
    return {"codes": codes}
