"""Request-scoped inputs: the services, the bearer token, and a bounded, parsed JSON body."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import orjson
from fastapi import Depends, Request

from rempart.context import RequestContext
from rempart.errors import InvalidResource, NotAuthenticated, PayloadTooLarge, RempartError
from rempart.wiring import Services


class UnsupportedMediaType(RempartError):
    status = 415
    code = "not-supported"


# The dependencies below are `async def` although they never await: FastAPI runs a plain `def`
# dependency in the thread pool, a thread hand-off per dependency per request (measured: about
# a quarter of a protected read's CPU went to dependencies and their hops).


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def get_services(request: Request) -> Services:
    return services_of(request)


def context_of(request: Request) -> RequestContext:
    # The direct peer; a deployment behind a proxy configures uvicorn's --forwarded-allow-ips.
    client = request.client.host if request.client else "unknown"
    return RequestContext(ip=client, user_agent=request.headers.get("user-agent", "")[:256])


async def request_context(request: Request) -> RequestContext:
    return context_of(request)


def token_of(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthenticated("this endpoint needs an 'Authorization: Bearer <token>' header")
    return token.strip()


async def bearer_token(request: Request) -> str:
    return token_of(request)


@dataclass(frozen=True, slots=True)
class Caller:
    """What a FHIR read needs of its request, taken without FastAPI's dependency machinery,
    which costs more per request than the three lookups themselves (the read routes are the
    hot path)."""

    svc: Services
    ctx: RequestContext
    token: str


def caller_of(request: Request) -> Caller:
    token = token_of(request)  # first: no token, 401 before anything else
    return Caller(services_of(request), context_of(request), token)


async def json_body(request: Request) -> object:
    """The body as JSON, read at most `max_body_bytes` (never trusting Content-Length alone)."""
    services = services_of(request)
    limit = services.settings.max_body_bytes
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in ("application/fhir+json", "application/json", ""):
        raise UnsupportedMediaType(f"send application/fhir+json, not {ctype!r}")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        raise InvalidResource("the request body is empty; send a JSON resource")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidResource(f"the body is not valid JSON: {exc}") from None


ServicesDep = Annotated[Services, Depends(get_services)]
TokenDep = Annotated[str, Depends(bearer_token)]
BodyDep = Annotated[object, Depends(json_body)]
ContextDep = Annotated[RequestContext, Depends(request_context)]
