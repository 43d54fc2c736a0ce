"""Login in two steps, then a bearer token; logout revokes it."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from rempart.api.deps import ServicesDep, TokenDep

router = APIRouter(prefix="/auth", tags=["authentication"])

Bounded = Annotated[str, Field(min_length=1, max_length=1024)]


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: Annotated[str, Field(min_length=1, max_length=150)]
    password: Bounded


class LoginChallenge(BaseModel):
    mfa_required: Literal[True] = True
    mfa_token: str
    methods: list[str]


class MfaRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mfa_token: Bounded
    code: Annotated[str, Field(min_length=1, max_length=16)]


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - a scheme name, not a secret
    expires_in: int


class LogoutResponse(BaseModel):
    revoked: bool


@router.post("/login", responses={401: {"description": "authentication failed"}})
async def login(body: LoginRequest, svc: ServicesDep) -> LoginChallenge:
    """Checks the password. Never returns a session: a second factor is always required."""
    token = await run_in_threadpool(svc.identity.login, body.username, body.password)
    return LoginChallenge(mfa_token=token, methods=["totp"])


@router.post("/mfa", responses={401: {"description": "authentication failed"}})
async def mfa(body: MfaRequest, svc: ServicesDep) -> TokenResponse:
    """Checks the second factor against the login challenge; a TOTP code is accepted once."""
    session = await run_in_threadpool(svc.identity.verify_mfa, body.mfa_token, body.code)
    return TokenResponse(access_token=session.access_token, expires_in=session.expires_in)


@router.post("/logout")
async def logout(svc: ServicesDep, token: TokenDep) -> LogoutResponse:
    await run_in_threadpool(svc.identity.logout, token)
    return LogoutResponse(revoked=True)
