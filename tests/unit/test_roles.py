"""The role table: what each process runs, which routes it mounts, what a broker outage means there."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import httpx
import pytest
from click.testing import CliRunner
from fastapi import FastAPI

from auditflow.app import create_app
from auditflow.backends.broker.base import Broker
from auditflow.backends.broker.memory import MemoryBroker
from auditflow.backends.broker.rabbitmq import RabbitMQBroker
from auditflow.cli import main
from auditflow.config import load_settings
from auditflow.errors import ConfigError
from auditflow.roles import DEFAULT_PORTS, ROLES, Role, ServiceName, broker_impact
from auditflow.runtime import Runtime
from auditflow.security import ApiToken
from auditflow.services.dashboard import HttpAlertSource, LocalAlertSource, alert_source, mount_dashboard

TOKEN = "roles-test-token-0123456789"

API_PREFIXES: dict[ServiceName, set[str]] = {
    "run": {"admin", "alerts", "channels", "dead-letters", "events", "generator", "rules"},
    "generator": {"admin", "events", "generator"},
    "syslog": {"admin", "events"},
    "analysis": {"admin", "rules"},
    "notification": {"admin", "alerts", "channels", "dead-letters", "rules"},
    "dashboard": {"admin"},
    "dispatcher": set(),  # probes and metrics only: no token to give it
}


def runtime_of(service: ServiceName, tmp_path: Path, **overrides: Any) -> Runtime:
    return Runtime(load_settings(data_dir=tmp_path, generator_rate=0, **overrides), service)


def api_prefixes(app: FastAPI) -> set[str]:
    return {path.split("/")[3] for path in app.openapi()["paths"] if path.startswith("/api/v1/")}


def test_every_service_has_roles_and_a_port() -> None:
    assert set(ROLES) == set(DEFAULT_PORTS) == set(get_args(ServiceName))


@pytest.mark.parametrize("service", sorted(API_PREFIXES))
def test_each_process_mounts_the_routers_of_its_roles(service: ServiceName, tmp_path: Path) -> None:
    app = create_app(runtime_of(service, tmp_path), [TOKEN], manage_lifecycle=False)
    assert api_prefixes(app) == API_PREFIXES[service]


@pytest.mark.parametrize(
    ("service", "parts"),
    [
        ("run", {"broker", "state", "store", "rules", "ingestor", "generator", "analysis", "notification"}),
        ("generator", {"broker", "ingestor", "generator"}),
        ("syslog", {"broker", "ingestor", "syslog"}),
        ("analysis", {"broker", "state", "rules", "analysis"}),
        ("notification", {"broker", "store", "rules", "notification"}),
        ("dashboard", set()),
        ("dispatcher", {"store"}),
    ],
)
def test_each_process_builds_only_the_parts_of_its_roles(service: ServiceName, parts: set[str], tmp_path: Path) -> None:
    runtime = runtime_of(service, tmp_path)
    candidates = ("broker", "state", "store", "rules", "ingestor", "generator", "analysis", "notification", "syslog")
    assert {name for name in candidates if getattr(runtime, name) is not None} == parts


async def test_a_route_of_an_absent_part_answers_404(tmp_path: Path) -> None:
    app = create_app(runtime_of("generator", tmp_path), [TOKEN], manage_lifecycle=False)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t", headers=headers) as c:
        assert (await c.get("/api/v1/alerts")).status_code == 404
        assert (await c.get("/api/v1/rules")).status_code == 404
        assert (await c.get("/api/v1/generator")).status_code == 200


@pytest.mark.parametrize(
    ("service", "impact"),
    [
        ("generator", "events cannot be accepted (503) and the generator pauses"),
        (
            "syslog",
            "events cannot be accepted (503) and syslog is buffered until full, then TCP senders wait and UDP "
            "messages are dropped",
        ),
        ("analysis", "events are not analysed"),
        ("notification", "new alerts are not received; stored alerts are still served"),
        (
            "run",
            "events cannot be accepted (503), the generator pauses, events are not analysed and new alerts "
            "are not received; stored alerts are still served",
        ),
    ],
)
def test_broker_impact_follows_from_the_roles(service: ServiceName, impact: str, tmp_path: Path) -> None:
    assert broker_impact(ROLES[service]) == impact
    assert runtime_of(service, tmp_path).dependencies["broker"].impact == impact


def test_only_the_memory_broker_is_in_process() -> None:
    assert MemoryBroker.in_process
    assert not Broker.in_process
    assert not RabbitMQBroker.in_process


async def test_the_dashboard_reads_this_process_store_or_the_alerts_api(tmp_path: Path) -> None:
    assert Role.DASHBOARD in ROLES["run"]
    tokens = [ApiToken.operator(TOKEN)]
    assert isinstance(alert_source(runtime_of("run", tmp_path), tokens), LocalAlertSource)
    remote = alert_source(runtime_of("dashboard", tmp_path, alerts_api_url="http://notification:8000"), tokens)
    assert isinstance(remote, HttpAlertSource)
    await remote.aclose()
    with pytest.raises(ConfigError, match="AUDITFLOW_ALERTS_API_URL"):
        mount_dashboard(FastAPI(), runtime_of("dashboard", tmp_path), tokens=tokens, users=None)


async def test_a_stand_alone_dashboard_needs_a_token_for_the_alerts_api(tmp_path: Path) -> None:
    url = "http://notification:8000"
    admin_only = load_settings(api_tokens=f"ops:admin:{TOKEN}").api_tokens
    with pytest.raises(ConfigError, match="AUDITFLOW_ALERTS_API_TOKEN must name"):
        alert_source(runtime_of("dashboard", tmp_path, alerts_api_url=url), admin_only)
    own = runtime_of("dashboard", tmp_path, alerts_api_url=url, alerts_api_token="d" * 20)
    remote = alert_source(own, admin_only)
    assert isinstance(remote, HttpAlertSource)
    await remote.aclose()


def test_the_embedded_dashboard_needs_a_token_that_may_delegate(tmp_path: Path) -> None:
    without_delegate = load_settings(api_tokens=f"ops:read+triage+admin:{TOKEN}").api_tokens
    with pytest.raises(ConfigError, match=r"the dashboard needs a token with the scopes delegate\+read\+triage"):
        alert_source(runtime_of("run", tmp_path), without_delegate)


def test_serve_dashboard_without_the_alerts_api_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("AUDITFLOW_"):
            monkeypatch.delenv(name)
    env = {"AUDITFLOW_API_TOKENS": TOKEN, "AUDITFLOW_DATA_DIR": str(tmp_path)}
    result = CliRunner().invoke(main, ["serve", "dashboard", "--port", "0"], env=env)
    assert result.exit_code == 1
    assert "AUDITFLOW_ALERTS_API_URL must point the dashboard at the notification API" in result.output
