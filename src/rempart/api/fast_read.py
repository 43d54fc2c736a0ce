"""The protected read's own door: `GET /fhir/{type}/{id}` reaches its handler without FastAPI's
router.

Why: the read is the request a hospital sends most. Before its handler runs, FastAPI tries the
routes one regex at a time and solves the two path parameters through its dependency machinery;
together that was more than the handler's own work outside the thread pool. This ASGI layer
sits inside the security-headers and demo-header middleware, recognises exactly the requests the
`read` route answers, calls that same handler, and turns its exceptions into responses with the
application's own exception handlers. Every other request passes through unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from fastapi import FastAPI, Request
from fastapi.routing import APIRoute
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from rempart.api import fhir_routes

READ_PATH = "/fhir/{res_type}/{res_id}"  # the route `fhir_routes.read` is declared on
# A subset of what that route matches; anything else (odd characters, longer ids) still
# reaches the same handler through the router.
_PATH = re.compile(r"/fhir/([A-Za-z]{1,64})/([A-Za-z0-9\-.]{1,64})")


def _flat(routes: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    """The routes in matching order; included routers are nested in recent FastAPI."""
    for route in routes:
        nested = getattr(route, "original_router", None)
        if nested is not None:
            yield from _flat(nested.routes)
        else:
            yield route


def _taken_before_read(app: FastAPI) -> frozenset[str]:
    """Resource types with a route of their own ahead of the read (`/fhir/AuditEvent/{id}`):
    their requests go through the router, which gives them to that route."""
    taken: set[str] = set()
    for route in _flat(app.router.routes):
        if (
            isinstance(route, APIRoute)
            and route.path == READ_PATH
            and "GET" in (route.methods or ())
        ):
            return frozenset(taken)
        path = getattr(route, "path", "")
        if path.startswith("/fhir/"):
            taken.add(path.split("/")[2])
    raise RuntimeError("the FHIR read route is not installed")


class FastRead:
    def __init__(self, app: ASGIApp, *, api: FastAPI) -> None:
        self.app = app
        self.api = api
        self._skip: frozenset[str] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            found = _PATH.fullmatch(scope["path"])
            if found is not None:
                if self._skip is None:
                    self._skip = _taken_before_read(self.api)
                res_type, res_id = found.group(1), found.group(2)
                # `_history`, `_search`...: the router's (and its 404 for what nobody serves).
                if res_type not in self._skip and not res_id.startswith(("_", "$")):
                    request = Request(scope, receive)
                    try:
                        response = await fhir_routes.read(request, res_type, res_id)
                    except Exception as exc:
                        response = await self._handled(request, exc)
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _handled(self, request: Request, exc: Exception) -> Response:
        """The response the application's exception handlers give (the nearest class wins,
        as in Starlette); re-raised when none applies."""
        handlers = self.api.exception_handlers
        for cls in type(exc).__mro__:
            handler = handlers.get(cls)
            if handler is not None:
                response = await handler(request, exc)  # type: ignore[misc]
                assert isinstance(response, Response)
                return response
        raise exc
