"""`auditflow notify`: check a routing file before it is deployed, and send a test through a channel."""

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


@notify.command("test")
@click.argument("channel")
@click.option(
    "--config",
    "config",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="AUDITFLOW_NOTIFY_CONFIG",
    show_envvar=True,
    help="Routing file that defines CHANNEL (default: the one the services use).",
)
def test(channel: str, config: Path | None) -> None:
    """Send a test notification through CHANNEL now and report the receiver's answer.

    The message is the `test` payload of docs/notifications.md: event `test`, a clearly fake alert
    with rule `auditflow-test`, signed like every delivery. It goes straight to the channel with its
    timeout, not through the outbox, so no service needs to run; the channel's secret must be set
    here as it is for the services. Exit 0 when the receiver accepted it, 1 with the reason otherwise.

    \b
    Example:
      AUDITFLOW_SOC_SECRET=... auditflow notify test soc --config notify.yaml
    """
    import asyncio

    from auditflow.errors import NotFound
    from auditflow.notify.http import HttpClient
    from auditflow.notify.routing import load_routing
    from auditflow.notify.testsend import ChannelTestResult, send_test

    if config is None:
        click.echo("no routing file: pass --config FILE or set AUDITFLOW_NOTIFY_CONFIG", err=True)
        raise SystemExit(1)

    async def send() -> ChannelTestResult:
        async with HttpClient() as client:
            return await send_test(routing, channel, client)

    try:
        routing = load_routing(config)
        result = asyncio.run(send())
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        raise SystemExit(1) from None
    except NotFound as exc:
        known = ", ".join(routing.channels) or "none"
        click.echo(f"{config}: {exc} (channels: {known})", err=True)
        raise SystemExit(1) from None
    if not result.ok:
        click.echo(f"failed: channel {channel!r}: {result.error} (after {result.duration_ms} ms)", err=True)
        raise SystemExit(1)
    click.echo(f"ok: channel {channel!r} accepted the test notification in {result.duration_ms} ms")
