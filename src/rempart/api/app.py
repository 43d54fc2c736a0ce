"""The HTTP application: FHIR at /fhir, authentication at /auth."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from rempart import __version__
from rempart.api import (
    access_routes,
    admin_routes,
    audit_routes,
    auth_routes,
    fhir_routes,
    me_routes,
    security_routes,
)
from rempart.api.fast_read import FastRead
from rempart.api.responses import install_error_handlers
from rempart.api.security_headers import SecurityHeaders
from rempart.config import load_settings
from rempart.wiring import Services, open_services

_DOC_PATHS = ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")


def create_app(services: Services) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await services.audit.settle_loop()  # the loop's own audit commit, if one is owed
        services.close()

    app = FastAPI(
        title="rempart",
        version=__version__,
        summary="FHIR R4 patient-record server",
        lifespan=lifespan,
    )
    app.state.services = services
    install_error_handlers(app)
    app.add_middleware(FastRead, api=app)  # first added: innermost, inside the header layers
    # Routes are matched in order, one regex each: the FHIR routes (the hot path) come first,
    # after the audit routes only because /fhir/AuditEvent must win over /fhir/{res_type}.
    # The others have prefixes of their own, so the order among them does not matter.
    app.include_router(audit_routes.router)
    app.include_router(fhir_routes.router)
    auth_routes.install(app, services.settings.profile)  # /auth, 429 handler, demo header
    app.include_router(me_routes.router)
    app.include_router(admin_routes.router)  # /admin (issue #4)
    app.include_router(access_routes.router)  # /access (issue #4)
    app.include_router(security_routes.router)  # /security: guard alerts, unlock (issue #7)
    # FastAPI put its documentation routes first; they are rarely asked for.
    docs = [r for r in app.router.routes if getattr(r, "path", None) in _DOC_PATHS]
    app.router.routes[:] = [r for r in app.router.routes if r not in docs] + docs
    app.add_middleware(SecurityHeaders, docs_paths=("/docs", "/redoc"))
    return app


def create_app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` workers (settings from REMPART_HOME and the URL)."""
    # 20 pooled connections (and as many more on demand) per worker: fewer, and 32 concurrent
    # reads closed and reopened SQLite connections on every request (measured: -20% at c32).
    app = create_app(open_services(load_settings(), pool_size=20))
    settle_heap()
    return app


def settle_heap() -> None:
    """Once a serving process has built its application: the ~150,000 objects it holds then
    (models, routes, SQL metadata), which live as long as the process, are left out of every
    later garbage collection. Each full collection walked them all: 180-275 ms with every
    request of the process stopped, every few seconds under load (a read's p99 at 32
    connections: 200-260 ms on one process, 50-60 ms on two; docs/benchmarks.md). A
    collection first, so no garbage is kept."""
    gc.collect()
    gc.freeze()
