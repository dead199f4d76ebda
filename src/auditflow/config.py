"""Settings: one pydantic-settings model, `AUDITFLOW_` environment variables over an optional YAML file.

Backends are chosen by URL scheme. Validators refuse unsafe values, and secrets are `SecretStr`
so they never reach a log line or a repr.
"""

from __future__ import annotations

import ipaddress
import json
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    YamlConfigSettingsSource,
)

from auditflow.backends.broker.urls import split_broker_urls
from auditflow.errors import ConfigError
from auditflow.model.event import Severity
from auditflow.security import MIN_TOKEN_LENGTH, ApiToken, parse_api_tokens
from auditflow.tls import TlsOptions

_config_file: ContextVar[Path | None] = ContextVar("auditflow_config_file", default=None)

# Credentials that ship as defaults with the servers we talk to; refused for non-loopback hosts.
_DEFAULT_CREDENTIALS = {("guest", "guest"), ("postgres", "postgres"), ("admin", "admin"), ("user", "password")}
_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1", ""}

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    """Every setting of every service. Environment: `AUDITFLOW_<NAME>`; file: `--config FILE` (YAML)."""

    model_config = SettingsConfigDict(env_prefix="AUDITFLOW_", extra="forbid", validate_default=True)

    # --- where things live -------------------------------------------------------------------
    data_dir: Path = Field(
        Path("data"), description="Directory for the SQLite file, the generated API token and admin password."
    )
    broker_url: str = Field(
        "memory://",
        description=(
            "Message broker: `memory://` (in-process) or `amqp://user:pass@host:5672/vhost`. For a RabbitMQ cluster, "
            "the nodes' URLs separated by commas (`amqp://u:p@h1:5672/,amqp://u:p@h2:5672/`): the client connects "
            "to the first reachable one and, when that connection is lost, to the next (docs/operations/rabbitmq.md)."
        ),
    )
    state_url: str = Field(
        "memory://",
        description=(
            "Window state: `memory://` (in-process), `redis://host:6379/0` (`rediss://` for TLS) or a Redis "
            "Cluster, `redis+cluster://host:7000,host:7001` (`rediss+cluster://` for TLS; the seed nodes, "
            "optionally `?wait_replicas=1&wait_timeout_ms=100` to wait for replicas, see docs/scaling.md)."
        ),
    )
    database_url: str | None = Field(
        None,
        description="Alert store: `sqlite:///path.db` or `postgresql://user:pass@host/db`. Default: `sqlite:///<data_dir>/auditflow.sqlite3`.",
    )
    rules_path: Path | None = Field(
        None,
        description="Directory (or file) of YAML rules; hot-reloaded. Default: the rule pack shipped in the package.",
    )
    rules_reload_interval: float = Field(2.0, gt=0, description="Seconds between checks of the rules path for changes.")

    # --- HTTP -----------------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Address the HTTP server binds to.")
    port: int | None = Field(
        None, ge=0, le=65535, description="HTTP port. Default: 8080 for `run`, the service's own port for `serve`."
    )
    # --- API tokens (see security.py) -------------------------------------------------------------
    api_tokens: Annotated[list[ApiToken], NoDecode] = Field(
        default_factory=list,
        description=(
            "Bearer tokens the API accepts, comma-separated `name:scope+scope:token` entries; scopes: "
            "`ingest` (submit events), `read` (alerts, statistics, rules, generator settings), `triage` "
            "(alert status and notes), `admin` (log level, generator control, dead letters), `delegate` "
            "(may name the acting user in `X-AuditFlow-Actor`: the dashboard's). The alert history names "
            "the token. A bare token (no name) keeps every scope for compatibility and is warned about at "
            "start-up. When empty, `auditflow run` generates one with every scope into the data directory."
        ),
    )
    alerts_api_token: SecretStr | None = Field(
        None,
        description=(
            "Token a stand-alone dashboard presents to the notification API (scopes `read+triage+delegate` "
            "there). Default: the first of its own `AUDITFLOW_API_TOKENS` with those scopes."
        ),
    )

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _parse_tokens(cls, value: Any) -> Any:
        return parse_api_tokens(value)

    @field_validator("alerts_api_token")
    @classmethod
    def _alerts_token_strength(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_TOKEN_LENGTH:
            raise ValueError(f"shorter than {MIN_TOKEN_LENGTH} characters")
        return value

    # --- HTTP, continued -------------------------------------------------------------------------
    public_url: str | None = Field(
        None, description="External URL shown in start-up messages; default derived from host and port."
    )

    forwarded_allow_ips: str = Field(
        "127.0.0.1",
        description=(
            "Comma-separated addresses or CIDR ranges of the proxies whose X-Forwarded-For/-Proto headers are "
            "trusted (client address for sign-in throttling, https for secure cookies); `*` is refused."
        ),
    )

    # --- logging --------------------------------------------------------------------------------
    log_level: LogLevel = Field(
        "INFO", description="Initial log level; changeable at runtime through `PUT /api/v1/admin/log-level`."
    )
    log_format: Literal["auto", "json", "console"] = Field(
        "auto",
        description=(
            "Log line format on stderr: `json` (one JSON object per line), `console` (readable lines), or `auto`: "
            "console when stderr is a terminal, JSON otherwise. Every line of a batch's path carries its "
            "`correlation_id` (docs/operations/tracing.md)."
        ),
    )

    # --- tracing (docs/operations/tracing.md) ---------------------------------------------------------
    otel_enabled: bool = Field(
        False,
        description=(
            "Export OpenTelemetry traces of each batch's path (ingest, analysis, notification, delivery) over "
            "OTLP/HTTP, the trace context travelling in message headers. Needs the `auditflow[otel]` extra. "
            "Off: no spans and no trace headers."
        ),
    )
    otel_endpoint: str | None = Field(
        None,
        description=(
            "OTLP/HTTP traces endpoint, e.g. `http://collector:4318/v1/traces`. Default: the standard "
            "`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT` variables, else "
            "`http://localhost:4318/v1/traces`."
        ),
    )
    otel_service_name: str | None = Field(
        None,
        description=(
            "The traces' `service.name`. Default: the standard `OTEL_SERVICE_NAME`, else `auditflow-<service>` "
            "(`auditflow-analysis`, ...; `auditflow` for `run`)."
        ),
    )

    @field_validator("otel_endpoint")
    @classmethod
    def _otel_endpoint_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in {"http", "https"}:
            raise ValueError("must be an http:// or https:// URL (OTLP over HTTP)")
        return value

    # --- messaging ------------------------------------------------------------------------------
    events_queue: str = Field("audit_events", description="Queue that carries event batches to analysis.")
    alerts_queue: str = Field("audit_alerts", description="Queue that carries alerts to notification.")
    dead_letter_queue: str = Field(
        "audit_dead_letter",
        description=(
            "Queue for messages or single events that cannot be processed (malformed, invalid, refused by the store), "
            "with the reason in headers; kept as the alert store's dead letters (docs/operations/dead-letters.md)."
        ),
    )
    broker_prefetch: int = Field(200, ge=1, le=10000, description="Unacknowledged messages a consumer may hold.")
    publish_batch_size: int = Field(
        500, ge=1, le=10000, description="Events or alerts per published message (JSON array)."
    )
    consume_batch_size: int = Field(
        100, ge=1, le=10000, description="Messages a consumer handles and acknowledges together."
    )
    consume_linger_ms: int = Field(
        10, ge=0, le=10000, description="How long a consumer waits to fill a batch of messages."
    )
    max_deliveries: int = Field(
        5, ge=1, le=100, description="Deliveries of one message before it is dead-lettered as poison."
    )

    # --- event time -----------------------------------------------------------------------------
    event_max_future: float = Field(
        300.0,
        ge=0,
        le=7 * 86400,
        description=(
            "Seconds an event's timestamp may lie ahead of the time the API receives it (clock skew); "
            "later events are refused with 422 naming `timestamp`."
        ),
    )
    event_max_age: float = Field(
        0.0,
        ge=0,
        description=(
            "Seconds an event's timestamp may lie behind the time the API receives it; older events are "
            "refused with 422. 0: no limit, so that `auditflow ingest` can backfill old logs (windows run on "
            "event time). A request with `X-AuditFlow-Backfill: true` is exempt."
        ),
    )

    # --- state ----------------------------------------------------------------------------------
    state_key_prefix: str = Field("auditflow:", description="Prefix of every key the state backend writes.")

    # --- store ----------------------------------------------------------------------------------
    store_batch_size: int = Field(1000, ge=1, le=100000, description="Alerts written per transaction at most.")
    store_flush_ms: int = Field(
        10,
        ge=0,
        le=60000,
        description=(
            "How long the notification service waits to fill a write batch. Under load the next batch fills while "
            "one is written, so a longer wait only adds detection latency."
        ),
    )

    # --- alert retention (docs/operations/retention.md) -------------------------------------------
    retention_days: int = Field(
        0,
        ge=0,
        le=36500,
        description=(
            "Days a resolved alert is kept after its last change (new occurrence, status change or note); then "
            "retention removes it with its events and history. 0: keep alerts forever. Alerts that are not "
            "resolved are never removed."
        ),
    )
    retention_days_by_severity: Annotated[dict[str, int], NoDecode] = Field(
        default_factory=dict,
        description=(
            'Per-severity overrides of `retention_days`, as JSON: `{"INFO": 30, "CRITICAL": 365}` (severity names '
            "in any case; 0 keeps that severity forever). Severities not named use `retention_days`."
        ),
    )
    retention_interval: int = Field(
        3600,
        ge=60,
        le=7 * 86400,
        description=(
            "Seconds between retention runs inside the notification service (and `auditflow run`), when a "
            "retention is set; one replica works at a time. `auditflow retention run` runs it once."
        ),
    )
    retention_batch_size: int = Field(
        1000, ge=1, le=100000, description="Alerts retention deletes per transaction, so writers never wait long."
    )

    @field_validator("retention_days_by_severity", mode="before")
    @classmethod
    def _retention_by_severity(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else {}
            except json.JSONDecodeError as exc:
                raise ValueError(f'expected a JSON object such as {{"INFO": 30}}: {exc.msg}') from None
        if not isinstance(value, dict):
            raise ValueError('expected a JSON object of severity to days, such as {"INFO": 30, "CRITICAL": 365}')
        known = {severity.value for severity in Severity}
        days: dict[str, int] = {}
        for key, number in value.items():
            name = str(key).upper()
            if name not in known:
                raise ValueError(f"unknown severity {key!r}; expected one of {', '.join(sorted(known))}")
            if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number <= 36500:
                raise ValueError(f"days for {name} must be an integer from 0 to 36500, got {number!r}")
            days[name] = number
        return days

    def retention_policy(self) -> dict[str, int]:
        """Days to keep resolved alerts, per severity; severities kept forever are left out."""
        policy = {
            severity.value: self.retention_days_by_severity.get(severity.value, self.retention_days)
            for severity in Severity
        }
        return {severity: days for severity, days in policy.items() if days > 0}

    # --- notifications ----------------------------------------------------------------------------
    notify_config: Path | None = Field(
        None,
        description=(
            "Routing file for notifications (channels, routes, retry policy; docs/notifications.md). When set, "
            "the notification service (and `auditflow run`) writes an outbox row per matching alert change and "
            "delivers it (unless `notify_dispatch` is off); `auditflow serve dispatcher` requires it. "
            "Hot-reloaded every `rules_reload_interval` seconds; check it with "
            "`auditflow notify check FILE`."
        ),
    )
    notify_dispatch: bool = Field(
        True,
        description=(
            "Whether the notification service (and `auditflow run`) also sends the outbox rows it writes. Set "
            "false where separate `auditflow serve dispatcher` processes send them: the rows are still written "
            "in the alert's transaction. `serve dispatcher` always sends."
        ),
    )

    # --- generator ------------------------------------------------------------------------------
    generator_rate: float = Field(
        5.0, ge=0, le=1_000_000, description="Synthetic events per second (0 disables the generator)."
    )
    generator_attack_share: float = Field(
        0.05, ge=0, le=1, description="Share of generated activity that is an attack scenario."
    )
    generator_seed: int | None = Field(None, description="Random seed for reproducible synthetic streams.")

    # --- dashboard ------------------------------------------------------------------------------
    dashboard_users: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description=(
            "Comma-separated `name:role:argon2-hash` entries (roles: viewer, analyst). When empty, an "
            "`admin` analyst with a generated password is created in the data directory."
        ),
    )
    session_secret: SecretStr | None = Field(
        None,
        description=(
            "No longer used: sessions are kept server-side (see session_store_url). Accepted so that "
            "existing deployments keep starting."
        ),
    )
    alerts_api_url: str | None = Field(
        None, description="Notification API base URL used by a stand-alone dashboard (`serve dashboard`)."
    )
    readiness_api_url: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated readiness URLs a stand-alone dashboard shows on its health page.",
    )

    # --- dashboard sessions and sign-in ---------------------------------------------------------
    session_store_url: str | None = Field(
        None,
        description=(
            "Where dashboard sessions live: `redis://`, `sqlite:///`, `postgresql://` or `memory://` (one "
            "process only). Default: the alert store database for `run`; for `serve dashboard` the Redis of "
            "AUDITFLOW_STATE_URL when it is `redis://`, else the alert store database URL."
        ),
    )
    session_ttl: int = Field(
        12 * 3600, ge=300, le=30 * 86400, description="Seconds a dashboard session lasts after sign-in."
    )
    password_check_concurrency: int = Field(
        2,
        ge=1,
        le=64,
        description="Password checks run at once per dashboard process; each argon2 check takes 64 MiB.",
    )
    password_check_queue: int = Field(
        8,
        ge=0,
        le=10000,
        description="Sign-ins that may wait for a password check; beyond that they get 503 with Retry-After.",
    )

    @field_validator("session_store_url")
    @classmethod
    def _session_store_scheme(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return _check_scheme(value, {"memory", "redis", "rediss", "sqlite", "postgresql", "postgres"})

    # --- syslog receiver (`serve syslog`) --------------------------------------------------------
    syslog_host: str | None = Field(
        None, description="Address the syslog receiver binds (UDP and TCP). Default: the HTTP `host`."
    )
    syslog_port: int = Field(
        5514, ge=0, le=65535, description="Port of the syslog receiver, the same for UDP and TCP (0: any free port)."
    )
    syslog_tls_port: int = Field(
        6514, ge=0, le=65535, description="Port of syslog over TLS (RFC 5425), when a certificate and key are set."
    )
    syslog_tls_cert: Path | None = Field(
        None, description="PEM certificate (chain) for syslog over TLS; TLS is off unless this and the key are set."
    )
    syslog_tls_key: Path | None = Field(None, description="PEM private key of `syslog_tls_cert`.")
    syslog_max_message: int = Field(
        65536, ge=480, le=1_048_576, description="Bytes of one syslog message; longer ones are cut and counted."
    )
    syslog_max_connections: int = Field(
        1000, ge=1, le=100_000, description="Open TCP and TLS syslog connections at most; more are closed at once."
    )
    syslog_idle_timeout: float = Field(
        300.0, gt=0, description="Seconds a syslog connection may stay silent (or stall mid-frame) before it is closed."
    )
    syslog_buffer_events: int = Field(
        20_000,
        ge=1,
        le=10_000_000,
        description=(
            "Parsed syslog events held while the broker is slow or down; when full, TCP senders are no longer"
            " read and UDP messages are dropped (counted)."
        ),
    )
    syslog_linger_ms: int = Field(
        20, ge=0, le=10_000, description="How long parsed syslog events wait to fill a batch before they are published."
    )

    # --- lifecycle ------------------------------------------------------------------------------
    shutdown_grace: float = Field(
        10.0, gt=0, le=600, description="Seconds allowed to drain and flush on SIGTERM before exit."
    )
    dependency_retry_max: float = Field(
        30.0, gt=0, description="Upper bound of the exponential back-off when a dependency is down."
    )

    # --- hardening: back-pressure, proxies, TLS to the backends ----------------------------------
    memory_queue_max_bytes: int = Field(
        64 * 1024 * 1024,
        ge=16 * 1024 * 1024,
        description=(
            "Bytes of message bodies an in-process (`memory://`) queue holds at most; beyond it event "
            "submissions answer 503 with Retry-After and readiness shows `intake` down."
        ),
    )
    intake_max_wait_ms: int = Field(
        500, ge=0, le=1000, description="How long an event submission waits for room in a full in-process queue."
    )
    tls_cert_file: Path | None = Field(
        None,
        description=(
            "Certificate chain (PEM) the HTTP server presents: with `tls_key_file`, every port serves HTTPS "
            "(for a port reached without a TLS-terminating proxy in front)."
        ),
    )
    tls_key_file: Path | None = Field(None, description="Private key (PEM) of `tls_cert_file`.")
    broker_tls_ca_file: Path | None = Field(
        None, description="CA bundle that verifies the broker's certificate (`amqps://` URLs)."
    )
    broker_tls_cert_file: Path | None = Field(None, description="Client certificate (PEM) for the broker.")
    broker_tls_key_file: Path | None = Field(None, description="Private key (PEM) of the broker client certificate.")
    broker_tls_verify: bool = Field(
        True, description="Verify the broker's certificate and host name; turn off only for a test server."
    )
    state_tls_ca_file: Path | None = Field(
        None, description="CA bundle that verifies the Redis server's certificate (`rediss://` URLs)."
    )
    state_tls_cert_file: Path | None = Field(None, description="Client certificate (PEM) for Redis.")
    state_tls_key_file: Path | None = Field(None, description="Private key (PEM) of the Redis client certificate.")
    state_tls_verify: bool = Field(
        True, description="Verify the Redis server's certificate and host name; turn off only for a test server."
    )
    database_tls_ca_file: Path | None = Field(
        None,
        description=(
            "CA bundle that verifies PostgreSQL's certificate (libpq `sslrootcert`); setting any "
            "`database_tls_*` makes the connection require TLS (`sslmode=verify-full`, or `require` unverified)."
        ),
    )
    database_tls_cert_file: Path | None = Field(None, description="Client certificate (PEM) for PostgreSQL.")
    database_tls_key_file: Path | None = Field(
        None, description="Private key (PEM) of the PostgreSQL client certificate."
    )
    database_tls_verify: bool = Field(
        True, description="Verify PostgreSQL's certificate and host name when TLS is configured."
    )

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _proxy_ranges(cls, value: str) -> str:
        # `*` would let any client that reaches the port directly (a LoadBalancer, a NodePort) claim
        # any address and scheme: only named proxies may speak for their clients.
        for item in (part.strip() for part in value.split(",")):
            if not item:
                continue
            if item == "*":
                raise ValueError(
                    "`*` trusts every client's X-Forwarded-* headers; list the proxies' addresses or CIDR ranges"
                )
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or CIDR range") from None
        return value

    @model_validator(mode="after")
    def _tls_pairs(self) -> Settings:
        for prefix in ("", "broker_", "state_", "database_"):
            cert, key = getattr(self, f"{prefix}tls_cert_file"), getattr(self, f"{prefix}tls_key_file")
            if (cert is None) != (key is None):
                raise ValueError(f"{prefix}tls_cert_file and {prefix}tls_key_file go together")
        return self

    def tls_for(self, backend: Literal["broker", "state", "database"]) -> TlsOptions | None:
        """The TLS options of one backend connection, or None when none is set."""
        options = TlsOptions(
            ca_file=getattr(self, f"{backend}_tls_ca_file"),
            cert_file=getattr(self, f"{backend}_tls_cert_file"),
            key_file=getattr(self, f"{backend}_tls_key_file"),
            verify=getattr(self, f"{backend}_tls_verify"),
        )
        return options if options.configured else None

    @field_validator("dashboard_users", "readiness_api_url", mode="before")
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("broker_url")
    @classmethod
    def _broker_scheme(cls, value: str) -> str:
        for part in split_broker_urls(value):
            _check_scheme(part, {"memory", "amqp", "amqps"})
        return value

    @field_validator("state_url")
    @classmethod
    def _state_scheme(cls, value: str) -> str:
        scheme = urlsplit(value).scheme
        if scheme in {"redis+cluster", "rediss+cluster"}:
            from auditflow.backends.state.cluster_url import parse_cluster_url

            parse_cluster_url(value)  # ValueError says what is wrong
            return value
        if scheme not in {"memory", "redis", "rediss"}:
            raise ValueError(
                f"unsupported scheme {scheme!r}; expected one of memory, redis, rediss, redis+cluster, rediss+cluster"
            )
        return value

    @field_validator("database_url")
    @classmethod
    def _database_scheme(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return _check_scheme(value, {"sqlite", "postgresql", "postgres"})

    @model_validator(mode="after")
    def _syslog_tls_pair(self) -> Settings:
        if (self.syslog_tls_cert is None) != (self.syslog_tls_key is None):
            raise ValueError("syslog TLS needs both syslog_tls_cert and syslog_tls_key")
        return self

    @model_validator(mode="after")
    def _refuse_default_credentials(self) -> Settings:
        for name in ("broker_url", "state_url", "database_url", "session_store_url"):
            url = getattr(self, name)
            if not url:
                continue
            for part in split_broker_urls(url) if name == "broker_url" else [url]:
                parts = urlsplit(part)
                if (parts.username or "", parts.password or "") in _DEFAULT_CREDENTIALS and (
                    parts.hostname or ""
                ) not in _LOOPBACK_HOSTS:
                    raise ValueError(
                        f"{name} uses a well-known default password for a non-local host; set real credentials"
                    )
        return self

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'auditflow.sqlite3').as_posix()}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, file_secret_settings]
        path = _config_file.get()
        if path is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)


def _check_scheme(value: str, allowed: set[str]) -> str:
    scheme = urlsplit(value).scheme.split("+")[0]
    if scheme not in allowed:
        raise ValueError(f"unsupported scheme {scheme!r}; expected one of {', '.join(sorted(allowed))}")
    return value


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build Settings from overrides (CLI flags) > environment > YAML file > defaults.

    Raises ConfigError with every invalid field named, and the file when one was given.
    """
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"{config_file}: configuration file not found")
    token = _config_file.set(config_file)
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except SettingsError as exc:
        where = f"{config_file}: " if config_file else ""
        raise ConfigError(f"{where}invalid settings: {exc}") from None
    except ValidationError as exc:
        where = f"{config_file}: " if config_file else ""
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{where}invalid settings: {problems}") from None
    finally:
        _config_file.reset(token)


def reference_markdown() -> str:
    """The configuration reference in docs/configuration.md, generated from the model."""
    lines = [
        "# Configuration reference",
        "",
        "Every setting is read from an `AUDITFLOW_<NAME>` environment variable, or from a YAML file given with",
        "`--config FILE` (keys are the lower-case names). Command-line flags win over the environment, which wins",
        "over the file. This page is generated from `auditflow.config.Settings`; a test fails when it is stale.",
        "",
        "| Variable | Default | Description |",
        "| --- | --- | --- |",
    ]
    for name, field in Settings.model_fields.items():
        if field.default_factory is not None:
            default = "(empty)"
        elif field.default is None:
            default = "(unset)"
        else:
            default = f"`{field.default}`"
        description = (field.description or "").replace("|", "\\|")
        lines.append(f"| `AUDITFLOW_{name.upper()}` | {default} | {description} |")
    return "\n".join(lines) + "\n" + _EVENT_TIME_SECTION


_EVENT_TIME_SECTION = """
## Event time and what an event may hold

Detection windows run on each event's own `timestamp` (event time), not on the time it arrived, so
a log file ingested months later detects exactly as it would have live. The API checks every event
against these bounds when it receives it and refuses the whole request with 422, naming the index
and `timestamp`, when one is outside them; events are never re-timed, because a moved timestamp
would silently change which windows they fall into.

* **Future**: at most `AUDITFLOW_EVENT_MAX_FUTURE` seconds (default 5 minutes) ahead of the time of
  receipt. One event dated years ahead would otherwise hold windows and the dashboard's live view.
* **Age**: at most `AUDITFLOW_EVENT_MAX_AGE` seconds old; 0 (the default) means no limit. With a
  limit set, a backfill sends `X-AuditFlow-Backfill: true` and the age limit does not apply to that
  request (the future limit still does).
* **Always**: from 1970-01-01 to before 9999-12-31 UTC, also for events read from the broker and
  for log lines (a line outside is counted as a bad timestamp). An offset that moves a time out of
  the range of dates (`9999-12-31T23:59:59-01:00`) is a 422, as are such `since`/`until` values.

The same rules of what can be stored apply at the API, to events read from the broker (an invalid
event is dead-lettered with the reason, the rest of its message is processed) and to events made by
the log parsers: no NUL character or lone surrogate in any text, `details` at most 32 levels deep and
at most 64 KiB as JSON, integers within the signed 64-bit range, numbers finite.
"""
