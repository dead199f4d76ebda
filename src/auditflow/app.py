"""The ASGI application of one process: the routers its roles need, error mapping, lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute, APIRouter
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route

from auditflow import __version__
from auditflow.api import admin, alerts, channels, dead_letters, deliveries, events, generator, health, rules
from auditflow.api.deps import route_scopes
from auditflow.codec import describe_error_list
from auditflow.errors import BackendError, BackendUnavailable, NotFound, QueueFull, SchemaNotReady
from auditflow.roles import Role, serves_api
from auditflow.runtime import Runtime
from auditflow.security import ApiToken, TokenVerifier, warn_about_bare_tokens

log = logging.getLogger("auditflow.app")

API_DESCRIPTION = """Security-audit detection pipeline.

Every endpoint except `/healthz`, `/readyz` and `/metrics` needs `Authorization: Bearer <token>`
(tokens from `AUDITFLOW_API_TOKENS`, or the one `auditflow run` generates on first start), and the
token needs the scope each operation names: `ingest`, `read`, `triage` or `admin` (401 without a
valid token, 403 without the scope). Only a token with the `delegate` scope may name the acting user
in `X-AuditFlow-Actor`.
Timestamps are RFC 3339 in UTC with a `Z` suffix."""

# The resource routers and the role that serves each; a route of a part this process does not run
# is not mounted at all (404).
_ROUTERS = (
    (Role.INGEST, events.router),
    (Role.GENERATOR, generator.router),
    (Role.ALERTS_API, alerts.router),
    (Role.ALERTS_API, dead_letters.router),
    (Role.ALERTS_API, deliveries.router),
    (Role.ALERTS_API, channels.router),
    (Role.RULES, rules.router),
)


def create_app(runtime: Runtime, tokens: Sequence[ApiToken | str], *, manage_lifecycle: bool = True) -> FastAPI:
    """Build the app for `runtime`, accepting `tokens` (a plain string is a token with every scope).
    With `manage_lifecycle`, the app's lifespan starts and stops the runtime (the CLI does it itself
    to control shutdown order and exit codes)."""
    accepted = [
        ApiToken.operator(token, number=number) if isinstance(token, str) else token
        for number, token in enumerate(tokens, start=1)
    ]
    warn_about_bare_tokens(accepted)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if manage_lifecycle:
            await runtime.start()
        try:
            yield
        finally:
            if manage_lifecycle:
                await runtime.aclose()

    app = _AuditFlowAPI(
        event_schemas=Role.INGEST in runtime.roles,
        title="AuditFlow",
        version=__version__,
        description=API_DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served below from the package: the product must work air-gapped
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    _mount_offline_docs(app)
    app.state.runtime = runtime
    app.state.verifier = TokenVerifier(accepted)
    routers = [router for role, router in _ROUTERS if role in runtime.roles]
    if serves_api(runtime.roles):  # a process with no API of its own (the dispatcher) needs no token
        routers.insert(0, admin.router)
    _document_scopes(routers)
    app.include_router(health.router)
    for router in routers:
        app.include_router(router)
    _install_error_handlers(app)
    return app


def _document_scopes(routers: Sequence[APIRouter]) -> None:
    """Each operation in /openapi.json names the scope it needs, read off its route's dependencies
    (FastAPI merges a route's `openapi_extra` into its operation). Set before the routers are
    included; the value depends only on the route, so doing it again for another app is harmless."""
    for router in routers:
        for route in router.routes:
            if isinstance(route, APIRoute) and (scopes := sorted(route_scopes(route))):
                docs = _scope_docs(route.description, [scope.value for scope in scopes])
                route.openapi_extra = {**(route.openapi_extra or {}), **docs}


class _AuditFlowAPI(FastAPI):
    """FastAPI, plus what it leaves out of /openapi.json: the event schema that the events route
    refers to (it reads its body by hand), and the 400 that any body that is not JSON at all gets."""

    def __init__(self, *, event_schemas: bool, **options: Any) -> None:
        super().__init__(**options)
        self._event_schemas = event_schemas

    def openapi(self) -> dict[str, Any]:
        spec = super().openapi()  # cached by FastAPI: the additions below are idempotent
        if self._event_schemas:
            events.add_event_schemas(spec)
        for operations in spec.get("paths", {}).values():
            for operation in operations.values():
                if "requestBody" in operation:
                    operation["responses"].setdefault("400", {"description": "The body could not be parsed"})
        return spec


def _scope_docs(description: str, scopes: list[str]) -> dict[str, Any]:
    needs = ", ".join(f"`{scope}`" for scope in scopes)
    return {
        "description": f"{description}\n\nNeeds a token with the {needs} scope.".strip(),
        "x-auditflow-scopes": scopes,
        "responses": {
            "401": {"description": "No bearer token, or an unknown one"},
            "403": {"description": f"The token lacks the {needs} scope (or `delegate`, to name an acting user)"},
        },
    }


def _mount_offline_docs(app: FastAPI) -> None:
    """Swagger UI at /docs from the swagger-ui-bundle package instead of FastAPI's default CDN."""
    import swagger_ui_bundle

    app.mount("/docs/static", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="AuditFlow API",
            swagger_js_url="/docs/static/swagger-ui-bundle.js",
            swagger_css_url="/docs/static/swagger-ui.css",
            swagger_favicon_url="/docs/static/favicon-32x32.png",
        )


def _flat_routes(routes: Sequence[BaseRoute]) -> Iterator[BaseRoute]:
    """Every route, also those of included routers (which FastAPI keeps behind a wrapper)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if isinstance(inner, APIRouter):
            yield from _flat_routes(inner.routes)
        else:
            yield route


def _install_error_handlers(app: FastAPI) -> None:
    def allowed_methods(request: Request, *, literal_only: bool = False) -> set[str]:
        return {
            method
            for route in _flat_routes(app.router.routes)
            if isinstance(route, Route | APIRoute)
            and (not literal_only or not route.param_convertors)
            and route.matches(request.scope)[0] is not Match.NONE
            for method in route.methods or ()
        }

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        # `PATCH /api/v1/alerts/stats` matched `/{alert_id}`; but /stats is a resource of its own,
        # which does not allow the method.
        literal = allowed_methods(request, literal_only=True)
        if literal and request.method not in literal:
            return JSONResponse(
                {"detail": "Method Not Allowed"}, status_code=405, headers={"Allow": ", ".join(sorted(literal))}
            )
        return JSONResponse({"detail": describe_error_list(exc.errors())}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 405:
            # Starlette names the methods of the first route of the path only; a path served by
            # several routes (GET and PUT) allows all of theirs.
            # A literal path (`/alerts/stats`) is its own resource even where a template also matches.
            allowed = allowed_methods(request, literal_only=True) or allowed_methods(request)
            exc.headers = {**(exc.headers or {}), "Allow": ", ".join(sorted(allowed))}
        return await http_exception_handler(request, exc)

    @app.exception_handler(NotFound)
    async def not_found(_: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc) or "not found"}, status_code=404)

    @app.exception_handler(BackendUnavailable)
    async def unavailable(request: Request, exc: BackendUnavailable) -> JSONResponse:
        if isinstance(exc, QueueFull):
            # Expected under load, and the client's retry is the remedy: no warning per request.
            return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "1"})
        runtime: Runtime | None = getattr(request.app.state, "runtime", None)
        store = runtime.dependencies.get("store") if runtime is not None else None
        migrating = runtime is not None and runtime.migrates_store and store is not None and not store.is_up
        if isinstance(exc, SchemaNotReady) and migrating:
            # This process migrates the store itself and has not finished: a moment, not an operator's task.
            return JSONResponse(
                {"detail": "the alert store is starting (its schema is being migrated); retry in a moment"},
                status_code=503,
                headers={"Retry-After": "1"},
            )
        if isinstance(exc, SchemaNotReady):
            # The operator's action, not a transient outage: say what to do.
            log.error("request failed: %s", exc)
            return JSONResponse(
                {"detail": "the alert store is not migrated: run auditflow migrate"},
                status_code=503,
                headers={"Retry-After": "30"},
            )
        log.warning("request failed, dependency unavailable: %s", exc)
        return JSONResponse(
            {"detail": "a dependency is unavailable; retry later"}, status_code=503, headers={"Retry-After": "5"}
        )

    @app.exception_handler(BackendError)
    async def backend_error(_: Request, exc: BackendError) -> JSONResponse:
        log.error("request failed in a backend: %s", exc)
        return JSONResponse({"detail": "internal backend error"}, status_code=500)


__all__ = ["create_app"]
