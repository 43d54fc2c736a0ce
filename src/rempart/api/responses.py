"""FHIR JSON responses and the error mapping: every failure is an OperationOutcome."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy.exc import IntegrityError as DbIntegrityError
from sqlalchemy.exc import OperationalError as DbOperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from rempart.crypto import CryptoError
from rempart.errors import RempartError
from rempart.fhir import operation_outcome

FHIR_JSON = "application/fhir+json"
log = logging.getLogger("rempart.api")


def fhir_response(
    body: bytes | dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return Response(content=content, status_code=status, media_type=FHIR_JSON, headers=headers)


def outcome_response(
    status: int, code: str, message: str, *, expression: str | None = None
) -> Response:
    headers = {"WWW-Authenticate": 'Bearer realm="rempart"'} if status == 401 else None
    return fhir_response(operation_outcome("error", code, message, expression), status, headers)


async def _rempart_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RempartError)
    return outcome_response(exc.status, exc.code, exc.message, expression=exc.expression)


async def _validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{where or 'body'}: {err.get('msg', 'invalid')}")
    return outcome_response(400, "invalid", "; ".join(parts) or "invalid request")


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not-found", 405: "not-supported"}.get(exc.status_code, "processing")
    message = {404: "no such endpoint", 405: "method not allowed here"}.get(
        exc.status_code, str(exc.detail)
    )
    return outcome_response(exc.status_code, code, message)


async def _integrity_error(_request: Request, _exc: Exception) -> Response:
    return outcome_response(409, "conflict", "the resource was changed concurrently; retry")


async def _crypto_error(_request: Request, exc: Exception) -> Response:
    # Key provider down or a wrapped key that will not open: fail closed, say nothing more.
    log.critical("cryptographic failure: %s", exc)
    return outcome_response(503, "transient", "the key service is unavailable; no data was sent")


async def _database_down(_request: Request, exc: Exception) -> Response:
    # A lost connection (server restart, failover): SQLAlchemy has invalidated the pool, so the
    # retry gets fresh connections. Nothing partial was sent.
    log.error("database unavailable: %s", type(exc).__name__)
    return outcome_response(503, "transient", "the database is unavailable; retry shortly")


async def _unexpected(_request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return outcome_response(500, "exception", "internal error; the request was not completed")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RempartError, _rempart_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DbIntegrityError, _integrity_error)
    app.add_exception_handler(CryptoError, _crypto_error)
    app.add_exception_handler(DbOperationalError, _database_down)
    app.add_exception_handler(Exception, _unexpected)
