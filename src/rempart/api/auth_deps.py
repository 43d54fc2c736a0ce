"""What the /auth routes share: small bounded JSON bodies, the 429 answer with Retry-After, the
demo-profile header, and the session dependencies."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rempart.access.pdp import Principal
from rempart.api.deps import ServicesDep, TokenDep, UnsupportedMediaType
from rempart.api.responses import outcome_response
from rempart.errors import InvalidResource, PayloadTooLarge
from rempart.identity.errors import Throttled

AUTH_BODY_LIMIT = 64 * 1024  # a WebAuthn response is a few KiB; nothing here needs more
DEMO_HEADER = b"rempart-demo-mode"
DEMO_TEXT = (
    b"demo profile: administrators may sign in with TOTP instead of a security key; "
    b"synthetic data only, never real patients"
)

Model = TypeVar("Model", bound=BaseModel)


async def small_json(request: Request) -> object:
    """The body as JSON, read at most 64 KiB: sign-in endpoints are open to anyone."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in ("application/json", ""):
        raise UnsupportedMediaType(f"send application/json, not {ctype!r}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > AUTH_BODY_LIMIT:
            raise PayloadTooLarge(f"the body is larger than {AUTH_BODY_LIMIT} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks) or b"{}"
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidResource("the body is not valid JSON") from None


def parse(model: type[Model], raw: object) -> Model:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        parts = []
        for err in exc.errors()[:5]:
            where = ".".join(str(p) for p in err.get("loc", ())) or "body"
            parts.append(f"{where}: {err.get('msg', 'invalid')}")
        raise InvalidResource("; ".join(parts)) from None


JsonDep = Annotated[Any, Depends(small_json)]


async def session_principal(svc: ServicesDep, token: TokenDep) -> Principal:
    return await run_in_threadpool(svc.identity.authenticate, token)


async def factor_principal(svc: ServicesDep, token: TokenDep) -> Principal:
    """Also accepts a session opened with an enrolment code (factor registration only)."""
    return await run_in_threadpool(svc.identity.authenticate_for_factors, token)


PrincipalDep = Annotated[Principal, Depends(session_principal)]
FactorPrincipalDep = Annotated[Principal, Depends(factor_principal)]


async def _throttled(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Throttled)
    response = outcome_response(exc.status, exc.code, exc.message)
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


class DemoModeHeader:
    """In the demo profile every response says so (administrators there may use TOTP)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def add_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (DEMO_HEADER, DEMO_TEXT)]
            await send(message)

        await self.app(scope, receive, add_header)


def install_auth_extras(app: FastAPI, profile: str) -> None:
    app.add_exception_handler(Throttled, _throttled)
    if profile == "demo":
        app.add_middleware(DemoModeHeader)
