"""`auditflow notify`: check a routing file before it is deployed."""

from __future__ import annotations

from pathlib import Path

import click

from auditflow.errors import ConfigError


@click.group()
def notify() -> None:
    """Notification routing."""


@notify.command("check")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--secrets/--no-secrets",
    default=True,
    show_default=True,
    help="Also require every channel's secret variable or file to be set (off where secrets are not mounted).",
)
def check(file: Path, secrets: bool) -> None:
    """Validate a routing FILE: print the problem and exit 1, or summarise channels and routes."""
    from auditflow.notify.routing import load_routing

    try:
        routing = load_routing(file, resolve_secrets=secrets)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        raise SystemExit(1) from None
    click.echo(f"ok: {file}: {len(routing.channels)} channel(s), {len(routing.routes)} route(s)")
