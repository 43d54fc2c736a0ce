"""The HTTP application: FHIR at /fhir, authentication at /auth."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from rempart import __version__
from rempart.api import auth_routes, fhir_routes
from rempart.api.responses import install_error_handlers
from rempart.api.security_headers import SecurityHeaders
from rempart.config import load_settings
from rempart.wiring import Services, open_services


def create_app(services: Services) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        services.close()

    app = FastAPI(
        title="rempart",
        version=__version__,
        summary="FHIR R4 patient-record server",
        lifespan=lifespan,
    )
    app.state.services = services
    install_error_handlers(app)
    app.include_router(auth_routes.router)
    app.include_router(fhir_routes.router)
    app.add_middleware(SecurityHeaders, docs_paths=("/docs", "/redoc"))
    return app


def create_app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` workers (settings from REMPART_HOME and the URL)."""
    return create_app(open_services(load_settings()))
