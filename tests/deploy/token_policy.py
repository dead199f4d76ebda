"""The least-privilege policy for API tokens, checked over the environment compose or Kubernetes gives
each service: every service accepts only named tokens, only with scopes its own routes need, and every
scope it serves is reachable; a token name means one secret everywhere; the dashboard presents the
token the notification service knows as its delegating one."""

from __future__ import annotations

import tempfile
from functools import cache
from pathlib import Path

import pytest

from auditflow.app import create_app
from auditflow.config import Settings, load_settings
from auditflow.roles import ROLES, ServiceName
from auditflow.runtime import Runtime
from auditflow.security import DASHBOARD_SCOPES, Scope


@cache
def scopes_served(service: str) -> frozenset[Scope]:
    """The scopes the routes of `service` demand, read off its OpenAPI document; a service that
    triages alerts also records who acted, so it may be told the acting user (delegate)."""
    name: ServiceName = next(known for known in ROLES if known == service)
    with tempfile.TemporaryDirectory() as data_dir:
        runtime = Runtime(load_settings(data_dir=Path(data_dir), generator_rate=0), name)
        spec = create_app(runtime, [], manage_lifecycle=False).openapi()
    found = {
        Scope(scope)
        for item in spec["paths"].values()
        for operation in item.values()
        for scope in operation.get("x-auditflow-scopes", [])
    }
    if Scope.TRIAGE in found:
        found.add(Scope.DELEGATE)
    return frozenset(found)


def settings_of(environment: dict[str, str]) -> Settings:
    with pytest.MonkeyPatch.context() as patch:
        for key, value in environment.items():
            if key.startswith("AUDITFLOW_"):
                patch.setenv(key, value)
        return Settings()


def check_least_privilege(environments: dict[str, dict[str, str]]) -> None:
    """`environments`: the AUDITFLOW_* variables of each AuditFlow service's container."""
    secret_of: dict[str, str] = {}
    name_of: dict[str, str] = {}
    settings = {service: settings_of(env) for service, env in environments.items()}
    for service, config in settings.items():
        served = scopes_served(service)
        granted: set[Scope] = set()
        for token in config.api_tokens:
            assert not token.bare, f"{service}: {token.name} is a bare token with every scope"
            extra = token.scopes - served
            assert not extra, f"{service}: token {token.name!r} has scopes {sorted(extra)} it does not serve"
            granted |= token.scopes
            secret = token.secret.get_secret_value()
            assert secret_of.setdefault(token.name, secret) == secret, f"{token.name} has two secrets"
            assert name_of.setdefault(secret, token.name) == token.name, f"one secret is {token.name} and another"
        unreachable = served - {Scope.DELEGATE} - granted
        assert not unreachable, f"{service}: no token may use its {sorted(unreachable)} routes"
    dashboard = settings["dashboard"]
    assert dashboard.alerts_api_token is not None, "the dashboard must present its own token"
    presented = dashboard.alerts_api_token.get_secret_value()
    [accepted] = [t for t in settings["notification"].api_tokens if t.secret.get_secret_value() == presented]
    assert accepted.scopes == DASHBOARD_SCOPES, accepted.scopes
