"""The `auditflow ingest` command: options, a progress bar on a terminal, and the summary (text or
`--json`) of lines read, events made, lines not understood by reason and, embedded, alerts raised."""

from __future__ import annotations

import sys
from datetime import UTC
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
import orjson
from rich.console import Console
from rich.progress import DownloadColumn, Progress, TaskID

from auditflow.model.alert import AlertSummary
from auditflow.sources.ingest import EventSink, IngestError, IngestOptions, IngestResult, ingest_paths
from auditflow.sources.lines import FormatDetector, ParserFactory, registry
from auditflow.sources.sinks import EmbeddedSink, HttpSink


def _zone(_ctx: click.Context, _param: click.Parameter, value: str | None) -> ZoneInfo | None:
    if value is None:
        return None
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise click.BadParameter(f"unknown time zone {value!r} (an IANA name such as Europe/Berlin)") from None


@click.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--format", "fmt", default="auto", show_default=True, help="Log format, or `auto` to detect it per file.")
@click.option("--host", help="Host name for lines that carry none (a file copied off a server).")
@click.option("--year", type=click.IntRange(1970, 9999), help="Year of syslog timestamps (default: from file mtime).")
@click.option("--tz", callback=_zone, help="Zone of timestamps without one (default: UTC).")
@click.option("--embedded", is_flag=True, help="Into a fresh local pipeline instead of a running instance.")
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), help="Embedded store directory.")
@click.option("--rules", "rules_path", type=click.Path(path_type=Path, exists=True), help="Embedded rules.")
@click.option("--url", envvar="AUDITFLOW_URL", default="http://127.0.0.1:8080", show_default=True, help="API URL.")
@click.option("--token", envvar="AUDITFLOW_TOKEN", help="Bearer token (env AUDITFLOW_TOKEN).")
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=1000, show_default=True)
@click.option("--forward-unparsed", is_flag=True, help="Send lines no parser understood as raw events.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal).")
def ingest(
    paths: tuple[str, ...],
    fmt: str,
    host: str | None,
    year: int | None,
    tz: ZoneInfo | None,
    embedded: bool,
    data_dir: Path | None,
    rules_path: Path | None,
    url: str,
    token: str | None,
    batch_size: int,
    forward_unparsed: bool,
    as_json: bool,
    progress: bool | None,
) -> None:
    """Parse log files (plain or .gz; `-` is stdin) and submit their events.

    Events go to a running instance (--url, --token), or with --embedded into a fresh local
    pipeline whose alerts are listed. Ingesting the same file again is harmless: event ids derive
    from the file and the line's offset. Exits 1 when no line could be parsed.
    """
    formats, create_parser, detect_format = registry()
    if fmt != "auto" and fmt not in formats:
        raise click.BadParameter(f"{fmt!r} is not one of auto, {', '.join(formats)}", param_hint="--format")
    if not embedded and not token:
        raise click.UsageError("--token (or AUDITFLOW_TOKEN) is required unless --embedded")
    options = IngestOptions(fmt, host, year, tz or UTC, forward_unparsed, batch_size)
    show = progress if progress is not None else sys.stderr.isatty()
    alerts: list[AlertSummary] | None = None
    try:
        with _ProgressBar(show) as bar:
            if embedded:
                with EmbeddedSink(data_dir, rules_path=rules_path) as local:
                    result = _run(paths, local, options, create_parser, detect_format, bar)
                    alerts = local.alerts()
            else:
                assert token is not None
                with HttpSink(url, token, batch_size=batch_size) as remote:
                    result = _run(paths, remote, options, create_parser, detect_format, bar)
    except IngestError as exc:
        raise click.ClickException(str(exc)) from None
    summary = _summary(result, alerts)
    click.echo(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() if as_json else _text(summary))
    if result.understood == 0:
        sys.exit(1)


def _run(
    paths: tuple[str, ...],
    sink: EventSink,
    options: IngestOptions,
    create: ParserFactory,
    detect: FormatDetector,
    bar: _ProgressBar,
) -> IngestResult:
    return ingest_paths(paths, sink, options, create_parser=create, detect_format=detect, progress=bar.update)


class _ProgressBar:
    """Bytes read per file on stderr; silent when not shown."""

    def __init__(self, show: bool) -> None:
        self._progress = Progress(*Progress.get_default_columns(), DownloadColumn(), console=Console(stderr=True))
        self._show = show
        self._tasks: dict[str, TaskID] = {}

    def update(self, name: str, done: int, total: int | None) -> None:
        if not self._show:
            return
        if name not in self._tasks:
            self._tasks[name] = self._progress.add_task(name, total=total)
        self._progress.update(self._tasks[name], completed=done)

    def __enter__(self) -> _ProgressBar:
        if self._show:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._show:
            self._progress.stop()


def _summary(result: IngestResult, alerts: list[AlertSummary] | None) -> dict[str, Any]:
    summary: dict[str, Any] = {
        **result.totals.as_dict(),
        "understood": result.understood,
        "sent": result.sent,
        "files": [f.as_dict() for f in result.files],
    }
    if alerts is not None:
        summary["alerts"] = [
            {
                "rule_id": a.rule_id,
                "severity": a.severity.value,
                "description": a.description,
                "user_id": a.user_id,
                "server_hostname": a.server_hostname,
                "first_seen": a.first_seen.isoformat(),
                "occurrences": a.occurrences,
            }
            for a in alerts
        ]
    return summary


def _text(summary: dict[str, Any]) -> str:
    lines = [f"{summary['lines']} lines read, {summary['events']} events made, {summary['sent']} sent"]
    for item in summary["files"]:
        lines.append(f"  {item['name']} ({item['format']}): {item['lines']} lines, {item['events']} events")
    if summary["unparsed"]:
        count = sum(summary["unparsed"].values())
        lines.append(f"{count} {'line' if count == 1 else 'lines'} not understood:")
        lines.extend(f"  {reason}: {count}" for reason, count in summary["unparsed"].items())
    if summary["forwarded_raw"]:
        lines.append(f"{summary['forwarded_raw']} of them forwarded as raw events")
    if "alerts" in summary:
        raised = len(summary["alerts"])
        lines.append(f"{raised} {'alert' if raised == 1 else 'alerts'} raised")
        lines.extend(
            f"  [{a['severity']}] {a['rule_id']}: {a['description']} (first seen {a['first_seen']})"
            for a in summary["alerts"]
        )
    if summary["understood"] == 0:
        lines.append("no line could be parsed: check --format")
    return "\n".join(lines)
