"""Sign-in in two steps, then a bearer token; logout, step-up, password change, sign-out
everywhere. Every failed sign-in is the same 401; throttled ones are 429 with Retry-After."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.concurrency import run_in_threadpool

from rempart.api import auth_factor_routes, auth_oidc_routes
from rempart.api.auth_deps import JsonDep, PrincipalDep, install_auth_extras, parse
from rempart.api.auth_models import (
    LoginChallenge,
    LoginRequest,
    LogoutResponse,
    MfaRequest,
    PasswordChange,
    StepUpRequest,
    StepUpResponse,
    TokenResponse,
)
from rempart.api.deps import ContextDep, ServicesDep, TokenDep
from rempart.errors import InvalidResource
from rempart.identity.core import Proof

router = APIRouter(prefix="/auth", tags=["authentication"])


def _proof(body: MfaRequest | StepUpRequest) -> Proof:
    fields: dict[str, Any] = {"code": body.code, "webauthn": body.webauthn}
    if isinstance(body, MfaRequest):
        fields |= {"recovery_code": body.recovery_code, "enrolment_code": body.enrolment_code}
    if sum(value is not None for value in fields.values()) != 1:
        raise InvalidResource(f"send exactly one second factor among {sorted(fields)}")
    return Proof(**fields)


@router.post("/login", responses={401: {"description": "authentication failed"}})
async def login(raw: JsonDep, svc: ServicesDep, ctx: ContextDep) -> LoginChallenge:
    """Checks the password. Never returns a session: a second factor is always required."""
    body = parse(LoginRequest, raw)
    challenge = await run_in_threadpool(svc.identity.login, body.username, body.password, ctx)
    return LoginChallenge(
        mfa_token=challenge.mfa_token, methods=challenge.methods, webauthn=challenge.webauthn
    )


@router.post("/mfa", responses={401: {"description": "authentication failed"}})
async def mfa(raw: JsonDep, svc: ServicesDep, ctx: ContextDep) -> TokenResponse:
    """Checks the second factor against the login challenge; each code is accepted once."""
    body = parse(MfaRequest, raw)
    proof = _proof(body)
    session = await run_in_threadpool(
        lambda: svc.identity.verify_mfa(body.mfa_token, proof=proof, ctx=ctx)
    )
    return TokenResponse(
        access_token=session.access_token, expires_in=session.expires_in, scope=session.scope
    )


@router.post("/logout")
async def logout(svc: ServicesDep, token: TokenDep, ctx: ContextDep) -> LogoutResponse:
    await run_in_threadpool(svc.identity.logout, token, ctx)
    return LogoutResponse(revoked=True)


@router.post("/step-up/options")
async def step_up_options(svc: ServicesDep, who: PrincipalDep) -> dict[str, Any]:
    """WebAuthn options for a step-up (null without a registered key: use a TOTP code)."""
    options = await run_in_threadpool(svc.identity.factors.step_up_options, who)
    return {"webauthn": options}


@router.post("/step-up", responses={401: {"description": "authentication failed"}})
async def step_up(
    raw: JsonDep, svc: ServicesDep, who: PrincipalDep, ctx: ContextDep
) -> StepUpResponse:
    """A fresh second factor for this session; sensitive actions check how recent it is."""
    proof = _proof(parse(StepUpRequest, raw))
    at = await run_in_threadpool(svc.identity.factors.step_up, who, proof, ctx)
    fresh = svc.settings.identity.sessions.step_up_seconds
    return StepUpResponse(factor_at=at, fresh_for=fresh)


@router.post("/password")
async def change_password(
    raw: JsonDep, svc: ServicesDep, who: PrincipalDep, ctx: ContextDep
) -> dict[str, bool]:
    """The current password and a new one; the account's other sessions end."""
    body = parse(PasswordChange, raw)
    await run_in_threadpool(
        svc.identity.change_password, who, body.current_password, body.new_password, ctx
    )
    return {"changed": True}


@router.post("/sessions/revoke-all")
async def revoke_all(svc: ServicesDep, who: PrincipalDep, ctx: ContextDep) -> dict[str, int]:
    """Sign out everywhere, this session included."""
    count = await run_in_threadpool(
        lambda: svc.identity.revoke_all_sessions(who.account_id, by=who.username, ctx=ctx)
    )
    return {"revoked": count}


def install(app: FastAPI, profile: str) -> None:
    """The /auth routers, the 429 handler and, in the demo profile, the demo header."""
    app.include_router(router)
    app.include_router(auth_factor_routes.router)
    app.include_router(auth_oidc_routes.router)
    install_auth_extras(app, profile)
