"""The `auditflow` command: run the embedded product, serve one service, migrate, check rules, send
events. `auditflow COMMAND --help` explains each."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import click

from auditflow import __version__
from auditflow.bench.cli import bench
from auditflow.client.dead_letters import dead_letters
from auditflow.config import Settings, load_settings
from auditflow.errors import AuditFlowError, ConfigError
from auditflow.filemodes import ensure_private_dir
from auditflow.logconfig import configure_logging
from auditflow.notify.command import notify
from auditflow.roles import DEFAULT_PORTS, ROLES, Role, ServiceName, serves_api
from auditflow.rules.export import export_command
from auditflow.rules.sigma.command import import_sigma_command
from auditflow.runtime import Runtime
from auditflow.sources.commands import register_source_commands

CONFIG_OPTION = click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="YAML settings file (keys as in docs/configuration.md); environment variables override it.",
)


def _settings(config_file: Path | None, **overrides: Any) -> Settings:
    try:
        return load_settings(config_file, **overrides)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="auditflow")
def main() -> None:
    """AuditFlow: security-audit events in, detections out.

    `auditflow run` starts everything in one process (nothing else to install);
    `auditflow serve SERVICE` runs one service of the distributed deployment.
    """


@main.command()
@CONFIG_OPTION
@click.option("--host", help="Address to bind.  [default: 127.0.0.1]")
@click.option("--port", type=int, help="Port to bind.  [default: 8080]")
@click.option("--generator-rate", type=float, help="Synthetic events per second; 0 disables.  [default: 5]")
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), help="Where data and secrets live.")
def run(
    config_file: Path | None, host: str | None, port: int | None, generator_rate: float | None, data_dir: Path | None
) -> None:
    """Run the whole pipeline in one process: API, generator, analysis, alert store, dashboard.

    Uses the in-memory broker and window state and a SQLite file unless the settings name real
    servers (AUDITFLOW_BROKER_URL, AUDITFLOW_STATE_URL, AUDITFLOW_DATABASE_URL). On first start an
    API token and a dashboard admin password are generated into the data directory and printed once.
    """
    settings = _settings(config_file, host=host, port=port, generator_rate=generator_rate, data_dir=data_dir)
    try:
        ensure_private_dir(settings.data_dir)  # before the store creates its SQLite file there
    except OSError as exc:
        raise click.ClickException(f"data directory {settings.data_dir}: {exc.strerror or exc}") from None
    sys.exit(_serve_process(settings, "run"))


@main.command()
@click.argument(
    "service", type=click.Choice(["generator", "syslog", "analysis", "notification", "dashboard", "dispatcher"])
)
@CONFIG_OPTION
@click.option("--host", help="Address to bind.  [default: 127.0.0.1]")
@click.option(
    "--port",
    type=int,
    help=(
        "HTTP port to bind.  [default: generator 5000, syslog 5002, analysis 5001, notification 8000,"
        " dashboard 8080, dispatcher 5003]"
    ),
)
def serve(service: str, config_file: Path | None, host: str | None, port: int | None) -> None:
    """Run one service of the distributed deployment.

    \b
    generator     ingest API (POST /api/v1/events) and the synthetic generator
    syslog        syslog receiver on UDP and TCP (AUDITFLOW_SYSLOG_PORT, 5514; TLS optional) and the ingest API
    analysis      applies the rules to the event stream, publishes alerts
    notification  stores alerts and serves the alerts API
    dashboard     the web UI, reading the notification API (AUDITFLOW_ALERTS_API_URL)
    dispatcher    sends the notification outbox (AUDITFLOW_NOTIFY_CONFIG); any number of replicas

    Every service answers /healthz, /readyz and /metrics, and starts even when its dependencies are
    down: /readyz says what is missing until they appear. AUDITFLOW_API_TOKENS is required, except
    by the dispatcher, which serves nothing else.
    """
    settings = _settings(config_file, host=host, port=port)
    roles = ROLES[next(name for name in ROLES if name == service)]
    if serves_api(roles) and not settings.api_tokens:
        raise click.ClickException("AUDITFLOW_API_TOKENS must name at least one token for `serve`")
    if Role.DISPATCHER in roles and settings.notify_config is None:
        raise click.ClickException("AUDITFLOW_NOTIFY_CONFIG must name the routing file for `serve dispatcher`")
    # click has checked the name against the choices; find it in the table to type it.
    sys.exit(_serve_process(settings, next(name for name in ROLES if name == service)))


def _serve_process(settings: Settings, service: ServiceName) -> int:
    configure_logging(service if service != "run" else "auditflow", settings.log_level, log_format=settings.log_format)
    from auditflow.tracing import configure_tracing, service_name

    try:  # before the runtime: its services read whether tracing is on
        stop_tracing = configure_tracing(
            settings.otel_enabled, settings.otel_endpoint, service_name(settings.otel_service_name, service)
        )
    except AuditFlowError as exc:  # the otel extra is not installed
        raise click.ClickException(str(exc)) from None
    try:
        return _serve_configured(settings, service)
    finally:
        if stop_tracing is not None:
            stop_tracing()  # flushes the spans still buffered


def _serve_configured(settings: Settings, service: ServiceName) -> int:
    from auditflow.security import ApiToken, ensure_api_token
    from auditflow.server import ProcessSpec, run_process

    tokens = list(settings.api_tokens)
    generated_token: str | None = None
    if not tokens:
        # The operator's own token for the embedded product: every scope, no warning.
        token, created = ensure_api_token(settings.data_dir)
        tokens = [ApiToken.operator(token)]
        generated_token = token if created else None
    users, admin_password = None, None
    if Role.DASHBOARD in ROLES[service]:
        from auditflow.services.dashboard import ensure_dashboard_users

        try:
            users, admin_password = ensure_dashboard_users(settings)
        except AuditFlowError as exc:
            raise click.ClickException(str(exc)) from None
    try:
        runtime = Runtime(settings, service)
    except AuditFlowError as exc:  # a bad routing file, say
        raise click.ClickException(str(exc)) from None
    port = settings.port if settings.port is not None else DEFAULT_PORTS[service]
    scheme = "https" if settings.tls_cert_file else "http"
    url = settings.public_url or f"{scheme}://{_display_host(settings.host)}:{port}"

    def banner() -> None:
        lines = [f"AuditFlow {service} listening on {url}"]
        if service == "run":
            lines.append(f"  dashboard:  {url}/   API docs: {url}/docs")
        if generated_token:
            lines.append(f"  API token (shown once, stored in {settings.data_dir / 'api-token'}): {generated_token}")
        elif service == "run" and not settings.api_tokens:
            lines.append(f"  API token: see {settings.data_dir / 'api-token'}")
        if admin_password:
            lines.append(f"  dashboard login (shown once): admin / {admin_password}")
        click.echo("\n".join(lines), err=False)

    try:
        return run_process(ProcessSpec(runtime, tokens, settings.host, port, dashboard_users=users, on_ready=banner))
    except AuditFlowError as exc:
        raise click.ClickException(str(exc)) from None


def _display_host(host: str) -> str:
    return "127.0.0.1" if host in {"0.0.0.0", ""} else host  # noqa: S104 - display only  # nosec B104


@main.command()
@CONFIG_OPTION
@click.option("--database-url", help="Overrides AUDITFLOW_DATABASE_URL.")
def migrate(config_file: Path | None, database_url: str | None) -> None:
    """Apply the alert-store migrations (SQLite or PostgreSQL) up to the newest revision."""
    from auditflow.backends.store import create_store

    settings = _settings(config_file, database_url=database_url)

    async def apply() -> None:
        async with create_store(settings.effective_database_url, tls=settings.tls_for("database")) as store:
            await store.migrate()

    try:
        asyncio.run(apply())
    except AuditFlowError as exc:
        raise click.ClickException(f"migration failed: {exc}") from None
    click.echo("alert store is at the newest schema revision")


@main.group()
def retention() -> None:
    """Alert retention: remove resolved alerts older than their severity's retention.

    The policy comes from AUDITFLOW_RETENTION_DAYS and AUDITFLOW_RETENTION_DAYS_BY_SEVERITY
    (docs/operations/retention.md). The notification service also runs it every
    AUDITFLOW_RETENTION_INTERVAL seconds.
    """


@retention.command("run")
@CONFIG_OPTION
@click.option("--database-url", help="Overrides AUDITFLOW_DATABASE_URL.")
@click.option("--dry-run", is_flag=True, help="Only count what would be removed; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
def retention_run(config_file: Path | None, database_url: str | None, dry_run: bool, as_json: bool) -> None:
    """Run retention once and report, per severity, the alerts, events and history entries removed.

    Resolved alerts whose last change is older than their severity's days are removed with their
    events and history; alerts that are not resolved are never removed. On PostgreSQL whole monthly
    partitions are dropped when every alert in them has expired, and the partitions of the coming
    months are created. Exits 1 when another run holds the database's retention lock.
    """
    import json

    from auditflow.backends.store.retention import run_retention
    from auditflow.backends.store.sql import SqlAlertStore

    settings = _settings(config_file, database_url=database_url)
    policy = settings.retention_policy()
    if not policy:
        click.echo("no retention is set (AUDITFLOW_RETENTION_DAYS and _BY_SEVERITY): every alert is kept")
        return

    async def apply() -> Any:
        store = SqlAlertStore(settings.effective_database_url, tls=settings.tls_for("database"))
        await store.start()
        try:
            await store.check_schema()
            return await run_retention(store, policy, batch_size=settings.retention_batch_size, dry_run=dry_run)
        finally:
            await store.aclose()

    try:
        report = asyncio.run(apply())
    except AuditFlowError as exc:
        raise click.ClickException(f"retention failed: {exc}") from None
    if as_json:
        click.echo(json.dumps(report.as_dict(), sort_keys=True))
    else:
        verb = "would remove" if dry_run else "removed"
        click.echo(f"retention {verb} (resolved alerts unchanged for the days shown):")
        click.echo(f"{'severity':<10} {'days':>6} {'alerts':>10} {'events':>10} {'history':>10}")
        for severity, days in policy.items():
            counts = report.removed.get(severity, {})
            click.echo(
                f"{severity:<10} {days:>6} {counts.get('alerts', 0):>10} {counts.get('alert_events', 0):>10}"
                f" {counts.get('alert_history', 0):>10}"
            )
        if report.dropped_partitions:
            click.echo(f"partitions {'to drop' if dry_run else 'dropped'}: {', '.join(report.dropped_partitions)}")
        if report.created_partitions:
            click.echo(f"partitions created: {', '.join(report.created_partitions)}")
        if report.skipped:
            click.echo(f"skipped: {report.skipped}")
        click.echo(f"took {report.seconds:.2f} s")
    if report.skipped:
        sys.exit(1)


@main.group()
def rules() -> None:
    """Work with detection rule files."""


@rules.command("check")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--strict", is_flag=True, help="Exit 1 on warnings too (Sigma rules that would not be loaded).")
def rules_check(paths: tuple[Path, ...], strict: bool) -> None:
    """Validate rule files or directories; print every problem and exit 1 if there is any.

    Sigma rules AuditFlow cannot evaluate are warnings: the other rules still load.
    """
    from auditflow.rules.loader import check_rules

    result = check_rules(list(paths))
    for problem in result.problems:
        click.echo(problem, err=True)
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    if result.problems or (strict and result.warnings):
        raise SystemExit(1)
    click.echo(f"ok: {', '.join(str(p) for p in paths)}")


@main.command()
@click.argument("file", type=click.File("rb"), default="-")
@click.option(
    "--url",
    envvar="AUDITFLOW_URL",
    default="http://127.0.0.1:8080",
    show_default=True,
    help="Base URL of the ingest API (env AUDITFLOW_URL).",
)
@click.option("--token", envvar="AUDITFLOW_TOKEN", required=True, help="Bearer token (env AUDITFLOW_TOKEN).")
@click.option(
    "--batch-size", type=click.IntRange(1, 10_000), default=1000, show_default=True, help="Events per request."
)
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal).")
def send(file: Any, url: str, token: str, batch_size: int, progress: bool | None) -> None:
    """Send events from a JSON array, a JSON object or JSON Lines FILE (default: stdin).

    Every record is validated first: a bad record is reported with its line and nothing is sent.
    """
    from auditflow.client.send import SendError, read_events, send_events

    name = getattr(file, "name", "<stdin>")
    try:
        records = list(read_events(file, name))
        summary = send_events(url, token, records, batch_size=batch_size, progress=progress, name=name)
    except SendError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"sent {summary.accepted} events in {summary.batches} batches ({summary.seconds:.1f} s)")


@main.group()
def dashboard() -> None:
    """Dashboard administration."""


@dashboard.command("hash-password")
@click.option("--user", "name", required=True, help="Login name.")
@click.option("--role", type=click.Choice(["viewer", "analyst"]), default="analyst", show_default=True)
@click.password_option(help="Prompted for when omitted (never put it in shell history).")
def hash_password_command(name: str, role: str, password: str) -> None:
    """Print a `name:role:argon2-hash` entry for AUDITFLOW_DASHBOARD_USERS."""
    from auditflow.services.dashboard import user_entry

    try:
        click.echo(user_entry(name, role, password))
    except (ValueError, AuditFlowError) as exc:
        raise click.ClickException(str(exc)) from None


main.add_command(bench)
rules.add_command(import_sigma_command)
rules.add_command(export_command)
register_source_commands(main)
main.add_command(dead_letters)
main.add_command(notify)
