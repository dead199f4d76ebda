"""The routing file: which channels exist and which alert changes go to them. Secrets are named by
environment variable or file, never written in the file itself."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from auditflow.errors import ConfigError
from auditflow.model.event import Severity
from auditflow.yamlfile import read_mapping

NotifyEvent = Literal["new", "escalation", "reopened", "resolved"]
ALL_EVENTS: tuple[NotifyEvent, ...] = ("new", "escalation", "reopened", "resolved")
DEFAULT_EVENTS: tuple[NotifyEvent, ...] = ("new", "reopened")
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WebhookChannel(_Strict):
    """POSTs a signed JSON message per delivery."""

    type: Literal["webhook"]
    url: Annotated[str, Field(pattern=r"^https?://")]
    secret_env: str | None = Field(None, description="Environment variable holding the signing secret")
    secret_file: Path | None = Field(None, description="File holding the signing secret")
    timeout: timedelta = Field(timedelta(seconds=10), gt=timedelta(0), description="Per request")

    @model_validator(mode="after")
    def _one_secret_source(self) -> WebhookChannel:
        if (self.secret_env is None) == (self.secret_file is None):
            raise ValueError("give exactly one of secret_env or secret_file (the signing secret)")
        return self

    def secret(self) -> SecretStr:
        """The signing secret; ConfigError when its variable or file is missing or empty."""
        if self.secret_env is not None:
            value = os.environ.get(self.secret_env, "")
            where = f"environment variable {self.secret_env}"
        else:
            assert self.secret_file is not None
            where = f"secret file {self.secret_file}"
            try:
                value = self.secret_file.read_text().strip()
            except OSError as exc:
                raise ConfigError(f"{where}: {exc.strerror}") from None
        if not value:
            raise ConfigError(f"{where} is empty or unset")
        return SecretStr(value)


class Route(_Strict):
    """Alert changes matching every given condition go to `channels`; an empty list matches all."""

    name: Name
    channels: list[Name] = Field(min_length=1)
    min_severity: Severity = Severity.INFO
    rule_ids: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list, description="Any of these tags")
    hosts: list[str] = Field(default_factory=list)
    users: list[str] = Field(default_factory=list)
    events: list[NotifyEvent] = Field(default_factory=lambda: list(DEFAULT_EVENTS), min_length=1)
    escalate_at: list[Annotated[int, Field(ge=2)]] = Field(
        default_factory=lambda: [10, 100, 1000], description="Occurrence counts whose crossing is an escalation"
    )
    throttle: timedelta = Field(timedelta(0), ge=timedelta(0), description="At most one escalation/reopened per alert")

    def matches(self, alert: dict[str, Any]) -> bool:
        if Severity(alert["severity"]).rank < self.min_severity.rank:
            return False
        if self.rule_ids and alert["rule_id"] not in self.rule_ids:
            return False
        if self.tags and not set(self.tags) & set(alert.get("tags") or ()):
            return False
        if self.hosts and alert.get("server_hostname") not in self.hosts:
            return False
        return not (self.users and alert.get("user_id") not in self.users)

    def crosses(self, previous: int, occurrences: int) -> bool:
        return any(previous < mark <= occurrences for mark in self.escalate_at)


class Delivery(_Strict):
    """Retry policy shared by every channel."""

    max_attempts: int = Field(8, ge=1, le=100)
    initial_backoff: timedelta = Field(timedelta(seconds=1), gt=timedelta(0))
    max_backoff: timedelta = Field(timedelta(minutes=10), gt=timedelta(0))
    lease: timedelta = Field(
        timedelta(seconds=60), gt=timedelta(0), description="How long a claimed row is reserved for its sender"
    )
    # An idle dispatcher looks for new rows this often: the delay a quiet outbox adds to a message.
    poll_interval: timedelta = Field(timedelta(milliseconds=250), gt=timedelta(0))
    batch_size: int = Field(100, ge=1, le=1000)
    # Requests in flight per dispatcher. httpx's pool costs CPU per request in proportion to its open
    # connections (docs/performance.md): raise this for slow receivers, not for fast ones.
    concurrency: int = Field(10, ge=1, le=200)


class Routing(_Strict):
    dashboard_url: str | None = Field(None, description="Base URL of the dashboard, for links to alerts")
    channels: dict[Name, WebhookChannel]
    routes: list[Route] = Field(min_length=1)
    delivery: Delivery = Field(default_factory=Delivery)

    @model_validator(mode="after")
    def _references(self) -> Routing:
        names = [route.name for route in self.routes]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"route names must be unique: {', '.join(duplicates)}")
        for index, route in enumerate(self.routes):
            unknown = [name for name in route.channels if name not in self.channels]
            if unknown:
                raise ValueError(f"routes[{index}] ({route.name}) names unknown channel(s): {', '.join(unknown)}")
        for name, channel in self.channels.items():
            # A lease shorter than a request would let a second dispatcher send the row meanwhile.
            if channel.timeout >= self.delivery.lease:
                raise ValueError(f"delivery.lease must be longer than channels.{name}.timeout")
        return self

    def alert_url(self, alert_id: str) -> str | None:
        return f"{self.dashboard_url.rstrip('/')}/alerts/{alert_id}" if self.dashboard_url else None


def load_routing(path: Path, *, resolve_secrets: bool = True) -> Routing:
    """Read and validate a routing file; ConfigError names the file and every bad field."""
    raw = read_mapping(path, "a mapping with `channels` and `routes`")
    try:
        routing = Routing.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(root)'}: {error['msg']}" for error in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from None
    if resolve_secrets:
        for name, channel in routing.channels.items():
            try:
                channel.secret()
            except ConfigError as exc:
                raise ConfigError(f"{path}: channels.{name}: {exc}") from None
    return routing
