"""What `auditflow bench` does once its options are parsed: build the options, run, print."""

from __future__ import annotations

import sys
from typing import Any

import click
import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from auditflow.bench.deployment import Servers
from auditflow.bench.options import BenchOptions
from auditflow.bench.report import ratios, render
from auditflow.bench.workload import DEFAULT_MIX, parse_mix
from auditflow.errors import AuditFlowError


def options_from(params: dict[str, Any]) -> BenchOptions:
    scenarios = params.pop("scenarios")
    if "all" in scenarios:
        scenarios = ("pipeline", "persistence", "api", "memory")
    mix_text = params.pop("mix")
    try:
        mix = parse_mix(mix_text) if mix_text else dict(DEFAULT_MIX)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--mix") from None
    servers = Servers(params.pop("broker_url"), params.pop("state_url"), params.pop("database_url"))
    params.pop("as_json", None)
    return BenchOptions(scenarios=tuple(dict.fromkeys(scenarios)), mix=mix, servers=servers, **params)


def execute(params: dict[str, Any]) -> None:
    import uvloop

    from auditflow.bench.runner import run

    as_json = params["as_json"]
    options = options_from(dict(params))
    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task("starting", total=1)

        def progress(phase: str, done: int, total: int) -> None:
            bar.update(task, description=phase, completed=done, total=total)

        try:
            result = uvloop.run(run(options, progress))
        except AuditFlowError as exc:
            raise click.ClickException(str(exc)) from None
    result["ratios"] = ratios(result)
    if as_json:
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        render(result, Console())
    pipeline = result.get("pipeline")
    if pipeline and not pipeline["correctness"]["ok"]:
        raise SystemExit(1)
