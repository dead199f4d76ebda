"""Dependencies of the routers, each naming exactly the part of the process a route needs (the
ingestor, the generator, the alert store, the rules), and bearer-token authentication.

A router is mounted only in a process whose roles run its part (see `app.create_app`), so the
404 below answers only if a route were ever mounted without it."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from auditflow.backends.store import AlertStore
from auditflow.rules import RuleWatcher
from auditflow.runtime import Runtime
from auditflow.security import TokenVerifier
from auditflow.services.generator import GeneratorService
from auditflow.services.ingest import Ingestor

_bearer = HTTPBearer(auto_error=False, description="A token from AUDITFLOW_API_TOKENS (or the generated one)")
_ACTOR_SAFE = re.compile(r"[^A-Za-z0-9_.@:-]")


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_verifier(request: Request) -> TokenVerifier:
    verifier: TokenVerifier = request.app.state.verifier
    return verifier


def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    verifier: Annotated[TokenVerifier, Depends(get_verifier)],
) -> str:
    """The caller's identity for audit trails; 401 without a valid bearer token."""
    index = verifier.index_of(credentials.credentials) if credentials is not None else None
    if index is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing or invalid bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    actor = f"token#{index}"
    # A trusted front end (the dashboard) names the person acting through the token.
    on_behalf = request.headers.get("x-auditflow-actor")
    if on_behalf:
        actor = f"{_ACTOR_SAFE.sub('_', on_behalf)[:64]} via {actor}"
    return actor


def _absent(what: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"this service {what}")


def get_store(runtime: Annotated[Runtime, Depends(get_runtime)]) -> AlertStore:
    if runtime.store is None:
        raise _absent("does not serve alerts")
    return runtime.store


def get_ingestor(runtime: Annotated[Runtime, Depends(get_runtime)]) -> Ingestor:
    if runtime.ingestor is None:
        raise _absent("does not ingest events")
    return runtime.ingestor


def get_generator(runtime: Annotated[Runtime, Depends(get_runtime)]) -> GeneratorService:
    if runtime.generator is None:
        raise _absent("runs no generator")
    return runtime.generator


def get_rules(runtime: Annotated[Runtime, Depends(get_runtime)]) -> RuleWatcher:
    if runtime.rules is None:
        raise _absent("loads no rules")
    return runtime.rules


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
ActorDep = Annotated[str, Depends(require_token)]
StoreDep = Annotated[AlertStore, Depends(get_store)]
IngestorDep = Annotated[Ingestor, Depends(get_ingestor)]
GeneratorDep = Annotated[GeneratorService, Depends(get_generator)]
RulesDep = Annotated[RuleWatcher, Depends(get_rules)]
