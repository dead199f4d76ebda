"""Dependencies shared by the routers: the process runtime and bearer-token authentication."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from auditflow.backends.store import AlertStore
from auditflow.runtime import Runtime
from auditflow.security import TokenVerifier

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


def get_store(runtime: Annotated[Runtime, Depends(get_runtime)]) -> AlertStore:
    if runtime.store is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="this service does not serve alerts")
    return runtime.store


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
ActorDep = Annotated[str, Depends(require_token)]
StoreDep = Annotated[AlertStore, Depends(get_store)]
