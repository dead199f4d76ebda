"""The distributed stack of compose.yaml from the built image, on this machine's RabbitMQ, Redis and
PostgreSQL: every container on host networking with compose's environment, command and health check, only
the server addresses, the ports and the names (queues, key prefix, database: unique to the run) changed.
Events posted to the generator become an alert that the alerts API and the dashboard show; each container
runs locked down as the manifests declare and exits 0 on `docker stop`."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from auditflow.bench.deployment import Deployment, Servers
from auditflow.bench.processes import free_port
from tests.conftest import POSTGRES_ADMIN_URL, RABBITMQ_URL, REDIS_URL, require_server
from tests.container.conftest import REPO, Container, Containers, assert_locked_down, docker
from tests.deploy.conftest import SERVICES, generate_secrets, interpolate, read_env_file, with_port

pytestmark = [
    pytest.mark.container,
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.rabbitmq,
    pytest.mark.timeout(1500),
]

ORDER = ("generator", "analysis", "notification", "dashboard")
HEALTHY_WITHIN = 90.0


@pytest.fixture
def deployment(tmp_path: Path, containers: Containers) -> Iterator[Deployment]:
    """The run's own database, queue names and key prefix on the shared servers, all removed afterwards."""
    for server in ("postgres", "redis", "rabbitmq"):
        require_server(server)
    run = Deployment(Servers(RABBITMQ_URL, REDIS_URL, POSTGRES_ADMIN_URL), tmp_path, name=f"t{uuid.uuid4().hex[:10]}")
    asyncio.run(run.create_database())
    yield run
    # Containers first: a service still running would declare the queues again after they are deleted.
    containers.remove_all()
    asyncio.run(run.destroy())


@pytest.fixture
def compose_secrets(tmp_path: Path) -> tuple[dict[str, str], str]:
    """A fresh .env from scripts/gen-secrets and the dashboard password it prints once."""
    path = tmp_path / ".env"
    result = generate_secrets("compose", "--output", path)
    assert result.returncode == 0, result.stderr
    match = re.search(r"dashboard login admin / (\S+)", result.stdout + result.stderr)
    assert match is not None, "gen-secrets printed no dashboard login"
    return read_env_file(path), match.group(1)


class Stack:
    """compose.yaml's AuditFlow services translated to `docker run` against the shared servers."""

    def __init__(self, image: str, containers: Containers, run: Deployment, dotenv: dict[str, str]) -> None:
        self.image = image
        self.containers = containers
        self.run = run
        self.dotenv = dotenv
        self.compose = yaml.safe_load((REPO / "compose.yaml").read_text(encoding="utf-8"))["services"]
        self.ports = {name: free_port() for name in ORDER}

    def _address(self, text: str) -> str:
        """compose's service addresses (`http://notification:8000`) as this run's (`http://127.0.0.1:<port>`)."""
        for name, port in self.ports.items():  # the services this stack runs (not the optional profiles')
            text = text.replace(f"http://{name}:{SERVICES[name].port}", f"http://127.0.0.1:{port}")
        return text

    def env(self, name: str) -> dict[str, str]:
        compose_env = self.compose[name]["environment"]
        env = {key: self._address(interpolate(str(value), self.dotenv)) for key, value in compose_env.items()}
        servers = {
            "AUDITFLOW_BROKER_URL": self.run.servers.broker_url,
            "AUDITFLOW_STATE_URL": self.run.servers.state_url,
            "AUDITFLOW_DATABASE_URL": self.run.database_url,
        }
        env |= {key: value for key, value in servers.items() if key in env}
        return env | {
            "AUDITFLOW_EVENTS_QUEUE": self.run.events_queue,
            "AUDITFLOW_ALERTS_QUEUE": self.run.alerts_queue,
            "AUDITFLOW_DEAD_LETTER_QUEUE": self.run.dead_letter_queue,
            "AUDITFLOW_STATE_KEY_PREFIX": self.run.key_prefix,
        }

    def options(self, name: str) -> list[str]:
        """compose's volumes and health check for the service, as `docker run` options."""
        options = []
        for volume in self.compose[name].get("volumes", []):
            source, target, mode = volume.split(":")
            options += ["--volume", f"{(REPO / source).resolve()}:{target}:{mode}"]
        check = self.compose[name].get("healthcheck")
        if check:
            test = check["test"]
            assert test[0] == "CMD"
            command = shlex.join(test[1:]).replace(
                f"127.0.0.1:{SERVICES[name].port}/", f"127.0.0.1:{self.ports[name]}/"
            )
            options += [
                f"--health-cmd={command}",
                f"--health-interval={check['interval']}",
                f"--health-timeout={check['timeout']}",
                f"--health-retries={check['retries']}",
                f"--health-start-period={check['start_period']}",
            ]
        grace = self.compose[name]["stop_grace_period"].removesuffix("s")
        return [*options, "--stop-timeout", grace]

    def start(self, name: str) -> Container:
        command = [str(part) for part in self.compose[name]["command"]]
        if "--port" in command:
            command = with_port(command, self.ports[name])
        tmpfs = [t for t in self.compose[name]["tmpfs"] if t.startswith("/var/lib/auditflow")]
        return self.containers.run(
            self.image, name, command, env=self.env(name), tmpfs=tmpfs[0], options=self.options(name)
        )

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"


def burst(user: str, host: str) -> list[dict[str, Any]]:
    at = datetime.now(UTC)
    return [
        {
            "event_id": str(uuid.uuid4()),
            "event_type": "user_login",
            "action_result": "FAILURE",
            "user_id": user,
            "server_hostname": host,
            "timestamp": (at + timedelta(milliseconds=100 * i)).isoformat(),
        }
        for i in range(3)
    ]


def wait_for_alert(url: str, token: str, user: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as client:
        while time.monotonic() < deadline:
            response = client.get("/api/v1/alerts", params={"rule_id": "failed-login-burst", "limit": 500})
            assert response.status_code == 200, response.text
            found = [item for item in response.json()["items"] if item["user_id"] == user]
            if found:
                return found[0]
            time.sleep(0.5)
    pytest.fail(f"no failed-login-burst alert for {user} within {timeout} s")


def sign_in(client: httpx.Client, password: str) -> None:
    login = client.get("/login")
    match = re.search(r'name="csrf_token" value="([^"]+)"', login.text)
    assert match is not None, login.text
    form = {"username": "admin", "password": password, "csrf_token": match.group(1)}
    assert client.post("/login", data=form).status_code == 303


def test_compose_stack_from_the_image_detects_and_stops_cleanly(
    image: str, containers: Containers, deployment: Deployment, compose_secrets: tuple[dict[str, str], str]
) -> None:
    dotenv, password = compose_secrets
    stack = Stack(image, containers, deployment, dotenv)

    migrate = stack.start("migrate")
    assert docker("wait", migrate.name, timeout=120).stdout.strip() == "0", migrate.logs()

    started = {name: stack.start(name) for name in ORDER}
    for container in started.values():
        container.wait_healthy(HEALTHY_WITHIN)
        assert_locked_down(container)

    user, host = f"u{uuid.uuid4().hex[:8]}", "db-1"
    ingest = httpx.post(
        f"{stack.url('generator')}/api/v1/events",
        json=burst(user, host),
        headers={"Authorization": f"Bearer {dotenv['INGEST_API_TOKEN']}"},
        timeout=10,
    )
    assert ingest.status_code == 202, ingest.text

    alert = wait_for_alert(stack.url("notification"), dotenv["OPERATOR_API_TOKEN"], user)
    print("\nalert through the containerized alerts API:", json.dumps(alert, indent=2))
    assert alert["rule_id"] == "failed-login-burst"
    assert alert["server_hostname"] == host

    with httpx.Client(base_url=stack.url("dashboard"), timeout=15) as dashboard:
        sign_in(dashboard, password)
        page = dashboard.get("/alerts", params={"rule_id": "failed-login-burst"})
        assert page.status_code == 200
        assert user in page.text
        assert alert["alert_id"] in page.text
        health = dashboard.get("/health")
        assert health.status_code == 200
        # The readiness of the three other containers (AUDITFLOW_READINESS_API_URL) and the alerts API.
        assert "Every dependency is up." in health.text
        assert "No dependency reported." not in health.text

    grace = int(stack.compose["dashboard"]["stop_grace_period"].removesuffix("s"))
    for name in reversed(ORDER):
        code, seconds = started[name].stop(grace)
        print(f"docker stop {name}: exit {code} after {seconds:.1f} s")
        assert code == 0, started[name].logs()
        assert seconds < grace
