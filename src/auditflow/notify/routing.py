"""The routing file: which channels exist and which alert changes go to them. Secrets are named by
environment variable or file, never written in the file itself."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from email.utils import parseaddr
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, ValidationError, model_validator

from auditflow.errors import ConfigError
from auditflow.model.event import Severity
from auditflow.rules.fields import parse_duration
from auditflow.yamlfile import read_mapping

NotifyEvent = Literal["new", "escalation", "reopened", "resolved"]
ALL_EVENTS: tuple[NotifyEvent, ...] = ("new", "escalation", "reopened", "resolved")
DEFAULT_EVENTS: tuple[NotifyEvent, ...] = ("new", "reopened")
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]
MAX_DIGEST = timedelta(days=1)


def _duration(value: Any) -> Any:
    """`5m`, `1h30m`, `7d` like the rules; seconds (also fractional) and ISO 8601 (`PT5M`) as before."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text[:1] in ("P", "p") or text.replace(".", "", 1).isdigit():
        return text
    return parse_duration(text)


Duration = Annotated[timedelta, BeforeValidator(_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def read_secret(env: str | None, file: Path | None) -> SecretStr:
    """A secret from an environment variable or a file (stripped); ConfigError when it is missing or empty."""
    if env is not None:
        value = os.environ.get(env, "")
        where = f"environment variable {env}"
    else:
        assert file is not None
        where = f"secret file {file}"
        try:
            value = file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{where}: {exc.strerror}") from None
    if not value:
        raise ConfigError(f"{where} is empty or unset")
    return SecretStr(value)


def _one_source(env: str | None, file: Path | None, prefix: str, what: str) -> None:
    if (env is None) == (file is None):
        raise ValueError(f"give exactly one of {prefix}_env or {prefix}_file ({what})")


class WebhookChannel(_Strict):
    """POSTs a signed JSON message per delivery."""

    type: Literal["webhook"]
    url: Annotated[str, Field(pattern=r"^https?://")]
    secret_env: str | None = Field(None, description="Environment variable holding the signing secret")
    secret_file: Path | None = Field(None, description="File holding the signing secret")
    timeout: Duration = Field(timedelta(seconds=10), gt=timedelta(0), description="Per request")

    @model_validator(mode="after")
    def _one_secret_source(self) -> WebhookChannel:
        _one_source(self.secret_env, self.secret_file, "secret", "the signing secret")
        return self

    def secret(self) -> SecretStr:
        """The signing secret; ConfigError when its variable or file is missing or empty."""
        return read_secret(self.secret_env, self.secret_file)

    def resolve_secrets(self) -> None:
        self.secret()


class SlackChannel(_Strict):
    """Posts a Block Kit message to a Slack incoming webhook; the webhook URL is the secret."""

    type: Literal["slack"]
    url_env: str | None = Field(None, description="Environment variable holding the incoming webhook URL")
    url_file: Path | None = Field(None, description="File holding the incoming webhook URL")
    timeout: timedelta = Field(timedelta(seconds=10), gt=timedelta(0), description="Per request")

    @model_validator(mode="after")
    def _one_url_source(self) -> SlackChannel:
        _one_source(self.url_env, self.url_file, "url", "the incoming webhook URL")
        return self

    def webhook_url(self) -> SecretStr:
        url = read_secret(self.url_env, self.url_file)
        if not url.get_secret_value().startswith(("https://", "http://")):
            where = f"environment variable {self.url_env}" if self.url_env else f"secret file {self.url_file}"
            raise ConfigError(f"{where} does not hold an http(s):// webhook URL")
        return url

    def resolve_secrets(self) -> None:
        self.webhook_url()


LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_ADDRESS = r"^[^@\s<>,;]+@[^@\s<>,;]+$"


class EmailChannel(_Strict):
    """Sends a plain-text and HTML email through an SMTP server."""

    model_config = ConfigDict(populate_by_name=True)

    type: Literal["email"]
    host: Annotated[str, Field(min_length=1)]
    port: int | None = Field(None, ge=1, le=65535, description="Default: 587 for starttls, 465 for tls, 25 for none")
    security: Literal["starttls", "tls", "none"] = "starttls"
    allow_insecure: bool = Field(False, description="Allow `security: none` to a host other than localhost")
    username: str | None = None
    password_env: str | None = Field(None, description="Environment variable holding the SMTP password")
    password_file: Path | None = Field(None, description="File holding the SMTP password")
    from_: Annotated[str, Field(alias="from", min_length=3)]
    to: list[Annotated[str, Field(pattern=_ADDRESS)]] = Field(min_length=1)
    subject_prefix: str = Field("[AuditFlow]", max_length=64)
    timeout: timedelta = Field(timedelta(seconds=30), gt=timedelta(0), description="For the whole SMTP exchange")
    ca_file: Path | None = Field(None, description="CA bundle that signed the server's certificate (private CA)")

    @model_validator(mode="after")
    def _consistent(self) -> EmailChannel:
        if self.security == "none" and self.host.lower() not in LOCAL_HOSTS and not self.allow_insecure:
            raise ValueError(
                "security: none sends the alert and the password in clear text: "
                "only to localhost, or set allow_insecure: true"
            )
        if self.username is None and (self.password_env is not None or self.password_file is not None):
            raise ValueError("a password needs a username")
        if self.username is not None:
            _one_source(self.password_env, self.password_file, "password", "the SMTP password for username")
        address = parseaddr(self.from_)[1]
        if not re.match(_ADDRESS, address) or any(c in self.from_ for c in "\r\n"):
            raise ValueError(f"from: {self.from_!r} is not an email address (e.g. AuditFlow <alerts@example.com>)")
        if any(c in self.subject_prefix for c in "\r\n"):
            raise ValueError("subject_prefix must be one line")
        return self

    @property
    def smtp_port(self) -> int:
        if self.port is not None:
            return self.port
        return {"starttls": 587, "tls": 465, "none": 25}[self.security]

    def password(self) -> SecretStr | None:
        if self.username is None:
            return None
        return read_secret(self.password_env, self.password_file)

    def resolve_secrets(self) -> None:
        self.password()


# Where one apprise URL ends and the next begins: delimiters followed by a `scheme://`.
_URL_BREAK = re.compile(r"[\s,;]+(?=[A-Za-z0-9]+://)")
_URL_DELIMITERS = " \t\r\n,;"


def apprise_missing() -> str | None:
    """Why the apprise channel cannot be used here, or None when the optional package is installed."""
    try:
        import apprise  # noqa: F401
    except ImportError:
        return "the apprise channel needs the apprise package: pip install 'auditflow[apprise]'"
    return None


class AppriseChannel(_Strict):
    """Sends through apprise (https://github.com/caronc/apprise) to any of the services it supports; its
    URLs embed credentials, so they are secrets."""

    type: Literal["apprise"]
    urls_env: str | None = Field(None, description="Environment variable holding the apprise URLs")
    urls_file: Path | None = Field(None, description="File holding the apprise URLs")
    format: Literal["text", "markdown"] = Field("text", description="How the body is written")
    timeout: timedelta = Field(timedelta(seconds=30), gt=timedelta(0), description="For all the URLs together")

    @model_validator(mode="after")
    def _usable(self) -> AppriseChannel:
        _one_source(self.urls_env, self.urls_file, "urls", "the apprise URLs")
        if (problem := apprise_missing()) is not None:
            raise ValueError(problem)
        return self

    def urls(self) -> list[str]:
        """The URLs, split as apprise splits them (spaces, commas, semicolons or new lines before the next
        `scheme://`, so a comma inside a URL stays), each one checked by apprise; ConfigError names a bad
        one by its position, never by its text (it holds credentials)."""
        import apprise

        text = read_secret(self.urls_env, self.urls_file).get_secret_value()
        urls = [url for part in _URL_BREAK.split(text) if (url := part.strip(_URL_DELIMITERS))]
        for number, url in enumerate(urls, 1):
            if not apprise.Apprise().add(url):
                scheme = url.partition("://")[0] if "://" in url else "?"
                raise ConfigError(f"apprise URL #{number} (scheme {scheme}) is not a URL apprise can use")
        return urls

    def resolve_secrets(self) -> None:
        self.urls()


Channel = Annotated[WebhookChannel | SlackChannel | EmailChannel | AppriseChannel, Field(discriminator="type")]
CHANNEL_TYPES = ("webhook", "slack", "email", "apprise")


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
    throttle: Duration = Field(timedelta(0), ge=timedelta(0), description="At most one escalation/reopened per alert")
    digest: Annotated[Duration, Field(gt=timedelta(0), le=MAX_DIGEST)] | None = Field(
        None,
        description="Bundle the route's changes into one message per channel, sent this long after the first",
    )

    @model_validator(mode="after")
    def _digest_or_throttle(self) -> Route:
        if self.digest is not None and self.throttle:
            # A digest already bundles every change of the window; holding some of them back as well
            # would make its count lie.
            raise ValueError("give either digest or throttle, not both: a digest already bundles an alert's changes")
        return self

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
    initial_backoff: Duration = Field(timedelta(seconds=1), gt=timedelta(0))
    max_backoff: Duration = Field(timedelta(minutes=10), gt=timedelta(0))
    lease: Duration = Field(
        timedelta(seconds=60), gt=timedelta(0), description="How long a claimed row is reserved for its sender"
    )
    # An idle dispatcher looks for new rows this often: the delay a quiet outbox adds to a message.
    poll_interval: Duration = Field(timedelta(milliseconds=250), gt=timedelta(0))
    batch_size: int = Field(100, ge=1, le=1000)
    # Requests in flight per dispatcher, each on a kept-alive connection of its own: raise this for
    # receivers with a long round trip, where waiting rather than CPU bounds the deliveries/s.
    concurrency: int = Field(10, ge=1, le=200)
    keep_sent: Duration = Field(timedelta(days=7), gt=timedelta(0), description="How long sent rows are kept")
    keep_dead: Duration = Field(timedelta(days=30), gt=timedelta(0), description="How long dead rows are kept")
    purge_interval: Duration = Field(
        timedelta(hours=1), gt=timedelta(0), description="How often a dispatcher deletes rows older than those"
    )


class Routing(_Strict):
    dashboard_url: str | None = Field(None, description="Base URL of the dashboard, for links to alerts")
    channels: dict[Name, Channel]
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


def _location(loc: tuple[int | str, ...]) -> str:
    """`channels.soc.url`, without the union tag pydantic inserts (`channels.soc.webhook.url`)."""
    parts = list(loc)
    if len(parts) >= 3 and parts[0] == "channels" and parts[2] in CHANNEL_TYPES:
        del parts[2]
    return ".".join(str(part) for part in parts) or "(root)"


def load_routing(path: Path, *, resolve_secrets: bool = True) -> Routing:
    """Read and validate a routing file; ConfigError names the file and every bad field."""
    raw = read_mapping(path, "a mapping with `channels` and `routes`")
    try:
        routing = Routing.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{_location(error['loc'])}: {error['msg']}" for error in exc.errors())
        raise ConfigError(f"{path}: {problems}") from None
    if resolve_secrets:
        for name, channel in routing.channels.items():
            try:
                channel.resolve_secrets()
            except ConfigError as exc:
                raise ConfigError(f"{path}: channels.{name}: {exc}") from None
    return routing
