"""The `auditflow agent` command: load the YAML configuration, serve /healthz and /metrics, follow
and ship until SIGTERM or SIGINT, then ship what was read and exit."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

import click

from auditflow.errors import AuditFlowError
from auditflow.logconfig import configure_logging
from auditflow.sources.agent import Agent
from auditflow.sources.agent_config import AgentConfig, load_agent_config
from auditflow.sources.agent_metrics import StatusServer
from auditflow.sources.lines import registry

log = logging.getLogger("auditflow.agent")


@click.command()
@click.option(
    "--config",
    "config_file",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Agent YAML file (see docs/agent.md).",
)
@click.option("--log-level", default="INFO", show_default=True, help="DEBUG, INFO, WARNING or ERROR.")
def agent(config_file: Path, log_level: str) -> None:
    """Follow log files and send their events to an AuditFlow instance.

    Survives rotation (rename and copytruncate) and restarts: offsets are checkpointed once the
    API accepted the lines, and event ids derive from file and offset, so nothing is lost or counted
    twice. Serves /healthz and /metrics on its own port.
    """
    formats, create_parser, _ = registry()
    try:
        config = load_agent_config(config_file, formats)
        token = config.api.resolve_token()
        configure_logging("agent", log_level.upper())
        runner = Agent(config, token, create_parser)
        asyncio.run(_serve(runner, config))
    except AuditFlowError as exc:
        raise click.ClickException(str(exc)) from None


async def _serve(runner: Agent, config: AgentConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, stop.set)
    status = None
    if config.http is not None:
        status = StatusServer(config.http.host, config.http.port, runner.health, runner.metrics)
        try:
            await status.start()
        except OSError as exc:
            raise AuditFlowError(f"http: cannot listen on {config.http.host}:{config.http.port}: {exc}") from None
    where = f"; /healthz and /metrics on http://{config.http.host}:{status.port}" if status and config.http else ""
    log.info("following %d files, sending to %s%s", len(runner.tails), config.api.url, where)
    try:
        await runner.run(stop)
    finally:
        if status is not None:
            await status.aclose()
    log.info("stopped; checkpoints in %s", config.checkpoint_file)
