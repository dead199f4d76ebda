"""The result of a run as tables for people; `--json` is `BenchResult.to_json`."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from auditflow.bench.results import (
    BenchResult,
    IngestResult,
    NotifyResult,
    Percentiles,
    PipelineResult,
    RulesResult,
)


def _n(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _ratio(value: float | None, baseline: float | None) -> str:
    if not value or not baseline:
        return "-"
    return f"{value / baseline:.2f}x"


def render(result: BenchResult, console: Console) -> None:
    after = result.machine_after or result.machine_before
    console.print(
        f"[bold]auditflow bench[/] mode={result.mode}  cores={result.machine_before.cores}"
        f"  load before={result.machine_before.loadavg[0]:.2f} after={after.loadavg[0]:.2f}"
    )
    table = Table("measure", "value", "baseline (same run)", "ratio", title="Results")
    pipeline = result.pipeline
    if pipeline:
        _pipeline_rows(table, pipeline)
    persistence = result.persistence
    if persistence:
        table.add_row(
            "alerts/s persisted (batched upsert)",
            _n(persistence.alerts_per_s),
            f"one INSERT per alert {_n(persistence.naive_alerts_per_s)}",
            _ratio(persistence.alerts_per_s, persistence.naive_alerts_per_s),
        )
    api = result.api
    if api:
        table.add_row("seeded alerts", _n(api.seeded), f"{_n(api.seed_alerts_per_s)} alerts/s", "")
        for name, page in (
            ("first_page", api.first_page),
            ("deep_page", api.deep_page),
            ("deep_page_filtered", api.deep_page_filtered),
        ):
            table.add_row(
                f"API {name.replace('_', ' ')} ms p50/p95/p99",
                _ranked(page),
                f"{page.requests} requests",
                "",
            )
    memory = result.memory
    if memory:
        table.add_row(
            f"RSS with {_n(memory.users)} users in open windows (MB)",
            f"{memory.rss_after_mb:.0f}",
            f"before {memory.rss_before_mb:.0f} ({memory.process})",
            "",
        )
    if result.notify:
        _notify_rows(table, result.notify)
    if table.row_count:
        console.print(table)
    if result.ingest:
        _ingest_table(result.ingest, console)
    if result.rules:
        _rules_table(result.rules, console)
    if pipeline:
        processes = Table(
            "process", "CPU (cores)", "CPU µs per event", "RSS peak MB", title="Resources during the pipeline run"
        )
        for name, stats in pipeline.processes.items():
            per_event = pipeline.cpu_us_per_event.get(name)
            processes.add_row(name, _n(stats.cpu_cores, 2), _n(per_event, 1), _n(stats.rss_peak_mb, 0))
        console.print(processes)


def _ranked(p: Percentiles) -> str:
    return f"{_n(p.p50, 1)} / {_n(p.p95, 1)} / {_n(p.p99, 1)}"


def _pipeline_rows(table: Table, pipeline: PipelineResult) -> None:
    raw = pipeline.baseline_raw_broker.events_per_s if pipeline.baseline_raw_broker else None
    naive = pipeline.baseline_naive.events_per_s if pipeline.baseline_naive else None
    table.add_row("events/s accepted", _n(pipeline.accepted_per_s), "", "")
    table.add_row(
        "events/s fully processed",
        _n(pipeline.processed_per_s),
        f"raw broker {_n(raw)}",
        _ratio(pipeline.processed_per_s, raw),
    )
    table.add_row("", "", f"naive path {_n(naive)}", _ratio(pipeline.processed_per_s, naive))
    table.add_row("events per CPU-second of the services", _n(pipeline.events_per_cpu_second), "", "")
    table.add_row("alerts/s stored", _n(pipeline.alerts_per_s, 1), "", "")
    lat = pipeline.latency_ms
    table.add_row(
        "detection latency ms p50/p95/p99",
        _ranked(lat),
        f"{lat.samples} alerts, polled every {lat.poll_ms:.0f} ms",
        "",
    )
    c = pipeline.correctness
    table.add_row(
        "alerts expected / stored",
        f"{c.expected} / {c.stored}",
        f"lost {c.lost}, duplicated {c.duplicated}, unexpected {c.unexpected}",
        "[green]ok[/]" if c.ok else "[red]WRONG[/]",
    )
    depths = pipeline.queue_depths
    if depths:
        peak = {k: max(d.get(k, 0) for d in depths) for k in depths[0] if k != "t"}
        table.add_row("queue depth peak (ready messages)", ", ".join(f"{k}={v:g}" for k, v in peak.items()), "", "")


def _notify_rows(table: Table, notify: NotifyResult) -> None:
    table.add_row(
        "alerts/s written (notify)",
        _n(notify.alerts_per_s),
        f"target {_n(notify.target_alerts_per_s)}; {notify.channels} deliveries per alert",
        "",
    )
    table.add_row(
        "deliveries/s to the webhook receiver",
        _n(notify.deliveries_per_s),
        f"{notify.baseline_client} loop {_n(notify.baseline_requests_per_s)} requests/s",
        _ratio(notify.deliveries_per_s, notify.baseline_requests_per_s),
    )
    if notify.httpx_requests_per_s is not None:
        table.add_row(
            "",
            "",
            f"httpx loop {_n(notify.httpx_requests_per_s)} requests/s,"
            f" {_n(notify.httpx_requests_per_cpu_second)} per CPU-second (reference)",
            "",
        )
    table.add_row(
        "deliveries per CPU-second of the dispatcher",
        _n(notify.deliveries_per_cpu_second),
        f"{notify.baseline_client} loop {_n(notify.baseline_requests_per_cpu_second)} requests per CPU-second",
        _ratio(notify.deliveries_per_cpu_second, notify.baseline_requests_per_cpu_second),
    )
    table.add_row("", f"offered {_n(notify.offered_deliveries_per_s)}", f"dispatcher: {notify.dispatchers}", "")
    lat = notify.latency_ms
    where = f"{lat.samples} deliveries, alert change to receipt"
    table.add_row("delivery latency ms p50/p95/p99", _ranked(lat), where, "")
    depth = notify.outbox_depth
    table.add_row("outbox depth min / max / final", f"{depth.min} / {depth.max} / {depth.final}", "", "")
    c = notify.correctness
    table.add_row(
        "deliveries expected / received",
        f"{c.expected} / {c.received}",
        f"lost {c.lost}, duplicated {c.duplicated}, unexpected {c.unexpected}, dead {c.dead},"
        f" rows missing {c.missing_rows}",
        "[green]ok[/]" if c.ok else "[red]WRONG[/]",
    )
    for name, usage in notify.processes.items():
        usage_text = f"{_n(usage.cpu_cores, 2)} / {_n(usage.rss_peak_mb)}"
        table.add_row(f"  {name} CPU (cores) / RSS peak MB", usage_text, "", "")


def _ingest_table(ingest: IngestResult, console: Console) -> None:
    table = Table(
        "sample (format)",
        "parsed lines/CPU-s",
        "with keys",
        "re loop (same run)",
        "ratio",
        "end to end lines/s",
        "per CPU-s",
        "events / alerts",
        title="Log lines to events (ingest): parsing on one core, and end to end into the embedded pipeline",
    )
    for s in ingest.samples:
        e2e = s.end_to_end
        table.add_row(
            f"{s.sample} ({s.format})",
            _n(s.parsed_lines_per_cpu_s),
            _n(s.parsed_keyed_lines_per_cpu_s),
            _n(s.baseline_lines_per_cpu_s),
            f"{s.parsed_vs_baseline:.3f}",
            _n(e2e.lines_per_s) if e2e else "-",
            _n(e2e.lines_per_cpu_s) if e2e else "-",
            f"{_n(s.events)} / {_n(e2e.alerts) if e2e else '-'}",
        )
    console.print(table)


def _rules_table(rules: RulesResult, console: Console) -> None:
    table = Table(
        "rules",
        "µs/event",
        "to pack",
        "gate / conditions µs",
        "every rule µs/event",
        "to pack",
        "alerts pack / other",
        "alerts",
        title=f"Detector CPU per event over {rules.events:,} events parsed from generated lines",
    )
    for s in rules.sets:
        table.add_row(
            f"{s.label} ({s.rules})",
            _n(s.us_per_event, 1),
            f"{s.ratio:.2f}x",
            f"{s.gate_us_per_event:.1f} / {s.conditions_us_per_event:.1f}",
            _n(s.us_per_event_every_rule, 1),
            f"{s.ratio_every_rule:.2f}x" if s.ratio_every_rule is not None else "-",
            f"{s.pack_alerts:,} / {s.extra_alerts:,}",
            "[green]ok[/]" if s.ok else "[red]WRONG[/]",
        )
    console.print(table)
    for note in rules.sources:
        console.print(f"  {note}")
