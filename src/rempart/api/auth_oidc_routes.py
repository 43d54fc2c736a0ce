"""OpenID Connect sign-in (e.g. Pro Santé Connect): start redirects to the provider; its
callback answers like POST /auth/login, with the second-factor challenge."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from rempart.api.auth_models import LoginChallenge
from rempart.api.deps import ContextDep, ServicesDep
from rempart.identity.errors import LoginFailed

router = APIRouter(prefix="/auth/oidc", tags=["authentication"])

Param = Annotated[str | None, Query(max_length=2048)]


@router.get("/{provider}/start")
async def start(provider: str, svc: ServicesDep) -> RedirectResponse:
    """302 to the provider's authorization endpoint (PKCE S256, nonce, state, acr_values)."""
    if len(provider) > 40:
        raise LoginFailed()
    url = await run_in_threadpool(svc.identity.oidc.start, provider)
    return RedirectResponse(url, status_code=302)


@router.get("/{provider}/callback", responses={401: {"description": "authentication failed"}})
async def callback(
    provider: str,
    svc: ServicesDep,
    ctx: ContextDep,
    code: Param = None,
    state: Param = None,
    error: Param = None,
) -> LoginChallenge:
    if error is not None or not code or not state or len(provider) > 40:
        raise LoginFailed()
    challenge = await run_in_threadpool(svc.identity.oidc.callback, provider, code, state, ctx)
    return LoginChallenge(
        mfa_token=challenge.mfa_token, methods=challenge.methods, webauthn=challenge.webauthn
    )
