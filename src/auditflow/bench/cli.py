"""The `auditflow bench` command. Only click and the option declarations are imported here: the
CLI loads this module on every invocation, and the bench machinery is imported when the command runs."""

from __future__ import annotations

from typing import Any

import click
from click.core import ParameterSource

from auditflow.bench.options import click_options


@click.command()
@click_options
@click.option("--json", "as_json", is_flag=True, help="Print the full result document as JSON instead of tables.")
def bench(as_json: bool, **params: Any) -> None:
    """Drive a workload with known expected alerts through the pipeline and report throughput,
    detection latency, queue depths, RSS and CPU per service and correctness, with baselines
    (raw broker; one event per message and one INSERT per alert) measured in the same run.

    Results are only comparable as ratios to those baselines: report the load average with them.
    With --rules or --sigma and no --scenario, the rules scenario alone runs: per-event detector CPU
    with those rules beside the shipped pack, against the pack alone.
    """
    from auditflow.bench.command import execute

    context = click.get_current_context()
    if (params["rules"] or params["sigma"]) and context.get_parameter_source("scenarios") is ParameterSource.DEFAULT:
        params["scenarios"] = ("rules",)
    execute(params, as_json=as_json)
