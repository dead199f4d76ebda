"""The result of a run for people (rich tables) and for machines (`--json`)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


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


def ratios(result: dict[str, Any]) -> dict[str, float | None]:
    """The headline ratios, also written into the JSON document."""
    out: dict[str, float | None] = {}
    pipeline = result.get("pipeline")
    if pipeline:
        processed = pipeline["processed_per_s"]
        raw = pipeline.get("baseline_raw_broker", {}).get("events_per_s")
        naive = pipeline.get("baseline_naive", {}).get("events_per_s")
        out["processed_vs_raw_broker"] = processed / raw if raw else None
        out["processed_vs_naive"] = processed / naive if naive else None
    persistence = result.get("persistence")
    if persistence and persistence.get("naive_alerts_per_s"):
        out["upsert_vs_naive_insert"] = persistence["alerts_per_s"] / persistence["naive_alerts_per_s"]
    return out


def render(result: dict[str, Any], console: Console) -> None:
    load = result["machine_before"]["loadavg"]
    console.print(
        f"[bold]auditflow bench[/] mode={result['mode']}  cores={result['machine_before']['cores']}"
        f"  load before={load[0]:.2f} after={result['machine_after']['loadavg'][0]:.2f}"
    )
    table = Table("measure", "value", "baseline (same run)", "ratio", title="Results")
    pipeline = result.get("pipeline")
    if pipeline:
        raw = pipeline.get("baseline_raw_broker", {})
        naive = pipeline.get("baseline_naive", {})
        table.add_row("events/s accepted", _n(pipeline["accepted_per_s"]), "", "")
        table.add_row(
            "events/s fully processed",
            _n(pipeline["processed_per_s"]),
            f"raw broker {_n(raw.get('events_per_s'))}",
            _ratio(pipeline["processed_per_s"], raw.get("events_per_s")),
        )
        table.add_row(
            "",
            "",
            f"naive path {_n(naive.get('events_per_s'))}",
            _ratio(pipeline["processed_per_s"], naive.get("events_per_s")),
        )
        table.add_row("events per CPU-second of the services", _n(pipeline.get("events_per_cpu_second")), "", "")
        table.add_row("alerts/s stored", _n(pipeline["alerts_per_s"], 1), "", "")
        lat = pipeline["latency_ms"]
        table.add_row(
            "detection latency ms p50/p95/p99",
            f"{_n(lat['p50'], 1)} / {_n(lat['p95'], 1)} / {_n(lat['p99'], 1)}",
            f"{lat['samples']} alerts, polled every {lat['poll_ms']:.0f} ms",
            "",
        )
        c = pipeline["correctness"]
        table.add_row(
            "alerts expected / stored",
            f"{c['expected']} / {c['stored']}",
            f"lost {c['lost']}, duplicated {c['duplicated']}, unexpected {c['unexpected']}",
            "[green]ok[/]" if c["ok"] else "[red]WRONG[/]",
        )
        if pipeline.get("queue_depths"):
            peak = {
                k: max(d.get(k, 0) for d in pipeline["queue_depths"]) for k in pipeline["queue_depths"][0] if k != "t"
            }
            table.add_row("queue depth peak (ready messages)", ", ".join(f"{k}={v}" for k, v in peak.items()), "", "")
    persistence = result.get("persistence")
    if persistence:
        table.add_row(
            "alerts/s persisted (batched upsert)",
            _n(persistence["alerts_per_s"]),
            f"one INSERT per alert {_n(persistence['naive_alerts_per_s'])}",
            _ratio(persistence["alerts_per_s"], persistence["naive_alerts_per_s"]),
        )
    api = result.get("api")
    if api:
        table.add_row("seeded alerts", _n(api["seeded"]), f"{_n(api['seed_alerts_per_s'])} alerts/s", "")
        for page in ("first_page", "deep_page", "deep_page_filtered"):
            p = api[page]
            table.add_row(
                f"API {page.replace('_', ' ')} ms p50/p95/p99",
                f"{_n(p['p50'], 1)} / {_n(p['p95'], 1)} / {_n(p['p99'], 1)}",
                f"{p['requests']} requests",
                "",
            )
    memory = result.get("memory")
    if memory:
        table.add_row(
            f"RSS with {_n(memory['users'])} users in open windows (MB)",
            f"{memory['rss_after_mb']:.0f}",
            f"before {memory['rss_before_mb']:.0f} ({memory['process']})",
            "",
        )
    console.print(table)
    if pipeline:
        processes = Table("process", "CPU (cores)", "RSS peak MB", title="Resources during the pipeline run")
        for name, stats in pipeline["processes"].items():
            processes.add_row(name, _n(stats["cpu_cores"], 2), _n(stats["rss_peak_mb"], 0))
        console.print(processes)
