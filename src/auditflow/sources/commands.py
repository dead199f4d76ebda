"""The commands of the log sources (`ingest`, `agent`), added to the `auditflow` group by cli.py."""

from __future__ import annotations

import click

from auditflow.sources.agent_command import agent
from auditflow.sources.ingest_command import ingest


def register_source_commands(group: click.Group) -> None:
    group.add_command(ingest)
    group.add_command(agent)
