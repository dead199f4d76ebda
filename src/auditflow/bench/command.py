"""What `auditflow bench` does once its options are parsed: build the options, run, print."""

from __future__ import annotations

import sys
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from auditflow.bench.options import BenchOptions
from auditflow.bench.report import render
from auditflow.errors import AuditFlowError
from auditflow.gctune import tuned_collector


def execute(params: dict[str, Any], *, as_json: bool) -> None:
    import uvloop

    from auditflow.bench.runner import run

    options = BenchOptions.from_params(params)
    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task("starting", total=1)

        def progress(phase: str, done: int, total: int) -> None:
            bar.update(task, description=phase, completed=done, total=total)

        try:
            # The collector settings of `auditflow run` and `serve`: the embedded mode measures
            # this very process.
            with tuned_collector():
                result = uvloop.run(run(options, progress))
        except AuditFlowError as exc:
            raise click.ClickException(str(exc)) from None
    if as_json:
        sys.stdout.write(result.to_json().decode() + "\n")
    else:
        render(result, Console())
    if not result.ok:
        raise SystemExit(1)
