"""Dependencies of the routers, each naming exactly the part of the process a route needs (the
ingestor, the generator, the alert store, the rules), and bearer-token authentication with one
scope per route (`IngestCaller`, `ReadCaller`, `TriageCaller`, `AdminCaller`).

A router is mounted only in a process whose roles run its part (see `app.create_app`), so the
404 below answers only if a route were ever mounted without it.

Every dependency here is `async def` although none of them awaits anything: FastAPI runs a plain
`def` dependency in its thread pool, a thread hand-off per dependency and request that cost more
than the work it wraps (several per request, on every route)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from auditflow.backends.store import AlertStore
from auditflow.rules import RuleWatcher
from auditflow.runtime import Runtime
from auditflow.security import ACTOR_HEADER, ApiToken, Scope, TokenVerifier, acting_name
from auditflow.services.generator import GeneratorService
from auditflow.services.ingest import Ingestor

_bearer = HTTPBearer(auto_error=False, description="A token from AUDITFLOW_API_TOKENS (or the generated one)")


@dataclass(frozen=True)
class Caller:
    """Who is calling: the token, and the user a delegating front end acts for."""

    token: ApiToken
    on_behalf: str | None = None

    @property
    def actor(self) -> str:
        """The name written into an alert's history."""
        return acting_name(self.token, self.on_behalf)


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_verifier(request: Request) -> TokenVerifier:
    verifier: TokenVerifier = request.app.state.verifier
    return verifier


async def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    verifier: Annotated[TokenVerifier, Depends(get_verifier)],
) -> Caller:
    """401 without a valid bearer token; 403 when a token without `delegate` names an acting user."""
    token = verifier.identify(credentials.credentials) if credentials is not None else None
    if token is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing or invalid bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    on_behalf = request.headers.get(ACTOR_HEADER)
    if on_behalf is not None and Scope.DELEGATE not in token.scopes:
        # Otherwise any client could write any name into the history.
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"token {token.name!r} lacks the 'delegate' scope needed to name an acting user in {ACTOR_HEADER}",
        )
    return Caller(token, on_behalf or None)


# Which scope each check enforces, so that tests and docs can read a route's scope off its dependencies.
SCOPE_CHECKS: dict[Callable[..., Awaitable[Caller]], Scope] = {}


def require_scope(scope: Scope) -> Callable[..., Awaitable[Caller]]:
    """A dependency that lets a request through only with a token that has `scope` (403 otherwise)."""

    async def check(caller: Annotated[Caller, Depends(authenticate)]) -> Caller:
        if scope not in caller.token.scopes:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"token {caller.token.name!r} lacks the {scope.value!r} scope this request needs",
            )
        return caller

    check.__name__ = f"require_{scope.value}_scope"
    SCOPE_CHECKS[check] = scope
    return check


def route_scopes(route: APIRoute) -> set[Scope]:
    """The scopes a route's dependencies demand (exactly one for every authenticated route)."""
    found: set[Scope] = set()
    pending = [route.dependant]
    while pending:
        dependant = pending.pop()
        if dependant.call in SCOPE_CHECKS:
            found.add(SCOPE_CHECKS[dependant.call])
        pending.extend(dependant.dependencies)
    return found


def _absent(what: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"this service {what}")


async def get_store(runtime: Annotated[Runtime, Depends(get_runtime)]) -> AlertStore:
    if runtime.store is None:
        raise _absent("does not serve alerts")
    return runtime.store


async def get_ingestor(runtime: Annotated[Runtime, Depends(get_runtime)]) -> Ingestor:
    if runtime.ingestor is None:
        raise _absent("does not ingest events")
    return runtime.ingestor


async def get_generator(runtime: Annotated[Runtime, Depends(get_runtime)]) -> GeneratorService:
    if runtime.generator is None:
        raise _absent("runs no generator")
    return runtime.generator


async def get_rules(runtime: Annotated[Runtime, Depends(get_runtime)]) -> RuleWatcher:
    if runtime.rules is None:
        raise _absent("loads no rules")
    return runtime.rules


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
IngestCaller = Annotated[Caller, Depends(require_scope(Scope.INGEST))]
ReadCaller = Annotated[Caller, Depends(require_scope(Scope.READ))]
TriageCaller = Annotated[Caller, Depends(require_scope(Scope.TRIAGE))]
AdminCaller = Annotated[Caller, Depends(require_scope(Scope.ADMIN))]
StoreDep = Annotated[AlertStore, Depends(get_store)]
IngestorDep = Annotated[Ingestor, Depends(get_ingestor)]
GeneratorDep = Annotated[GeneratorService, Depends(get_generator)]
RulesDep = Annotated[RuleWatcher, Depends(get_rules)]
