"""Request and response bodies of the /auth endpoints."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Bounded = Annotated[str, Field(min_length=1, max_length=1024)]
Code = Annotated[str, Field(min_length=1, max_length=16)]
Recovery = Annotated[str, Field(min_length=1, max_length=40)]
Secret = Annotated[str, Field(min_length=1, max_length=1024)]
WebAuthnResponse = Annotated[dict[str, Any], Field(max_length=16)]


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: Annotated[str, Field(min_length=1, max_length=150)]
    password: Bounded


class LoginChallenge(BaseModel):
    mfa_required: Literal[True] = True
    mfa_token: str
    methods: list[str]
    # PublicKeyCredentialRequestOptions for navigator.credentials.get(), if a key is registered.
    webauthn: dict[str, Any] | None = None


class MfaRequest(BaseModel):
    """`mfa_token` and exactly one of: a TOTP `code`, a `webauthn` assertion, a
    `recovery_code`, or an `enrolment_code` (which opens a factor-registration session)."""

    model_config = ConfigDict(extra="forbid")
    mfa_token: Bounded
    code: Code | None = None
    webauthn: WebAuthnResponse | None = None
    recovery_code: Recovery | None = None
    enrolment_code: Recovery | None = None


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - a scheme name, not a secret
    expires_in: int
    scope: str = "full"


class LogoutResponse(BaseModel):
    revoked: bool


class StepUpRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: Code | None = None
    webauthn: WebAuthnResponse | None = None


class StepUpResponse(BaseModel):
    factor_at: int  # microseconds since the epoch, UTC
    fresh_for: int  # seconds


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    current_password: Bounded
    new_password: Bounded
