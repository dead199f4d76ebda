"""AuditFlow's Grafana dashboards, built with grafana-foundation-sdk; scripts/gen-monitoring writes them
as JSON to deploy/monitoring/grafana/dashboards/ (provisioned by compose's `monitoring` profile, and
shipped as ConfigMaps by the Kustomize component deploy/k8s/components/monitoring/).

Every panel queries the data source chosen in the `datasource` variable; uids are fixed so links and
bookmarks survive a regeneration. Metric names are the ones the services export (src/auditflow/metrics.py,
src/auditflow/notify/metrics.py, src/auditflow/sources/) plus prometheus-client's process collector.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from grafana_foundation_sdk.builders import common, dashboard, prometheus, stat, statetimeline, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (
    BigValueGraphMode,
    GraphDrawStyle,
    LegendDisplayMode,
    LegendPlacement,
    SortOrder,
    TooltipDisplayMode,
)
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DashboardLinkType,
    DataSourceRef,
    ValueMap,
    ValueMappingResult,
    VariableRefresh,
    VariableSort,
)

DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "$__rate_interval"
QUANTILES = (0.5, 0.95, 0.99)
TAGS = ["auditflow"]

Query = tuple[str, str]  # (PromQL, legend)


def _targets(queries: list[Query]) -> list[prometheus.Dataquery]:
    return [
        prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(chr(ord("A") + i)).datasource(DATASOURCE)
        for i, (expr, legend) in enumerate(queries)
    ]


def _legend() -> common.VizLegendOptions:
    """A table under the graph with each series' mean and peak, biggest first."""
    return (
        common.VizLegendOptions()
        .show_legend(True)
        .display_mode(LegendDisplayMode.TABLE)
        .placement(LegendPlacement.BOTTOM)
        .calcs(["mean", "max", "lastNotNull"])
        .sort_by("Max")
        .sort_desc(True)
    )


def graph(
    title: str, unit: str, queries: list[Query], description: str, *, span: int = 12, bars: bool = False
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .targets(_targets(queries))  # type: ignore[arg-type]
        .span(span)
        .height(8)
        .min(0)
        .fill_opacity(10)
        .legend(_legend())
        .tooltip(common.VizTooltipOptions().mode(TooltipDisplayMode.MULTI).sort(SortOrder.DESCENDING))
    )
    return panel.draw_style(GraphDrawStyle.BARS) if bars else panel


def single(title: str, unit: str, query: Query, description: str, *, span: int = 6) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .targets(_targets([query]))  # type: ignore[arg-type]
        .span(span)
        .height(4)
        .graph_mode(BigValueGraphMode.AREA)
    )


def up_down(title: str, query: Query, description: str, *, span: int = 12) -> statetimeline.Panel:
    mapping = ValueMap(
        {"0": ValueMappingResult(text="down", color="red"), "1": ValueMappingResult(text="up", color="green")}
    )
    return (
        statetimeline.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(_targets([query]))  # type: ignore[arg-type]
        .mappings([mapping])
        .fill_opacity(70)
        .line_width(0)
        .legend(common.VizLegendOptions().show_legend(False).display_mode(LegendDisplayMode.HIDDEN))
        .span(span)
        .height(8)
    )


def quantiles(metric: str, by: str = "", selector: str = "") -> list[Query]:
    """p50/p95/p99 of a histogram, summed over every series (or kept apart by `by`)."""
    group = f"le, {by}" if by else "le"
    legend = "{{" + by + "}} " if by else ""
    return [
        (
            f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{selector}[{RATE}])))",
            f"{legend}p{round(q * 100)}",
        )
        for q in QUANTILES
    ]


def _datasource_variable() -> dashboard.DatasourceVariable:
    return dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")


def _query_variable(name: str, label: str, query: str) -> dashboard.QueryVariable:
    return (
        dashboard.QueryVariable(name)
        .label(label)
        .query(query)
        .datasource(DATASOURCE)
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .sort(VariableSort.ALPHABETICAL_ASC)
    )


def _dashboard(uid: str, title: str, description: str) -> dashboard.Dashboard:
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .editable()
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .refresh("30s")
        .time("now-3h", "now")
        .timezone("browser")
        .link(
            dashboard.DashboardLink("AuditFlow")
            .type(DashboardLinkType.DASHBOARDS)
            .tags(TAGS)
            .as_dropdown(True)
            .keep_time(True)
            .include_vars(True)
        )
        .with_variable(_datasource_variable())
    )


def _layout(board: dashboard.Dashboard, rows: list[tuple[str, list[object]]]) -> dashboard.Dashboard:
    """Rows of panels, numbered 1.. in reading order (Grafana needs ids unique within a dashboard)."""
    ident = 0
    for title, panels in rows:
        ident += 1
        board = board.with_row(dashboard.Row(title).id(ident))
        for panel in panels:
            ident += 1
            board = board.with_panel(panel.id(ident))  # type: ignore[attr-defined]
    return board


def overview() -> dashboard.Dashboard:
    board = _dashboard(
        "auditflow-overview",
        "AuditFlow / Pipeline overview",
        "Events in, detections, alerts, queues and dead letters across every AuditFlow service.",
    )
    return _layout(
        board,
        [
            (
                "Intake",
                [
                    graph(
                        "Events in by source",
                        "eps",
                        [(f"sum by (source) (rate(auditflow_events_ingested_total[{RATE}]))", "{{source}}")],
                        "Events accepted for analysis (HTTP API, syslog, agent), by the source label of the batch.",
                    ),
                    graph(
                        "Events analysed",
                        "eps",
                        [
                            (f"sum(rate(auditflow_events_analyzed_total[{RATE}]))", "analysed"),
                            (f"sum(rate(auditflow_events_ingested_total[{RATE}]))", "ingested"),
                        ],
                        "Analysis should keep up with ingest: a lasting gap means a backlog.",
                    ),
                    graph(
                        "Syslog messages by transport and outcome",
                        "mps",
                        [
                            (
                                f"sum by (transport, outcome) (rate(auditflow_syslog_messages_total[{RATE}]))",
                                "{{transport}} {{outcome}}",
                            )
                        ],
                        "What the syslog receiver made of each message: events, no-event, or why it was not "
                        "understood.",
                    ),
                    graph(
                        "Agent events by file",
                        "eps",
                        [(f"sum by (path) (rate(auditflow_agent_events_total[{RATE}]))", "{{path}}")],
                        "Events the log agents made from the files they follow (agents scraped by this Prometheus).",
                    ),
                ],
            ),
            (
                "Detection",
                [
                    graph(
                        "Detections by rule (top 10)",
                        "cps",
                        [(f"topk(10, sum by (rule_id) (rate(auditflow_detections_total[{RATE}])))", "{{rule_id}}")],
                        "Alerts published by analysis per rule; a repeat of a suppressed alert counts again.",
                    ),
                    graph(
                        "Detections by rule kind",
                        "cps",
                        [(f"sum by (rule_kind) (rate(auditflow_detections_total[{RATE}]))", "{{rule_kind}}")],
                        "match, threshold and sequence rules.",
                    ),
                    graph(
                        "Alerts by severity",
                        "cps",
                        [(f"sum by (severity) (rate(auditflow_detections_total[{RATE}]))", "{{severity}}")],
                        "Alerts published by analysis, by the severity of their rule.",
                    ),
                    graph(
                        "Alerts stored",
                        "cps",
                        [(f"sum by (result) (rate(auditflow_alerts_stored_total[{RATE}]))", "{{result}}")],
                        "Alert rows written by notification: inserted (a new alert) or updated (a de-duplicated "
                        "repeat).",
                    ),
                    graph(
                        "Detection latency",
                        "s",
                        quantiles("auditflow_detection_latency_seconds"),
                        "From an event batch accepted at ingest to its alerts published by analysis (objective: "
                        "under 1 s).",
                        span=24,
                    ),
                ],
            ),
            (
                "Backlog and failures",
                [
                    graph(
                        "Queue depth",
                        "short",
                        [("max by (queue) (auditflow_queue_depth)", "{{queue}}")],
                        "Messages ready in each queue, sampled by its consumer every 5 s.",
                    ),
                    graph(
                        "Dead letters",
                        "short",
                        [
                            (
                                f"sum by (queue, reason) (increase(auditflow_dead_letters_total[{RATE}]))",
                                "{{queue}} {{reason}}",
                            )
                        ],
                        "Messages or single events/alerts routed to the dead-letter queue (see "
                        "docs/operations/dead-letters.md).",
                        bars=True,
                    ),
                    single(
                        "Dead letters stored",
                        "short",
                        ("max(auditflow_dead_letters_stored)", "stored"),
                        "Dead letters kept in the store, awaiting replay or purge.",
                    ),
                    single(
                        "Open notification outbox",
                        "short",
                        ("sum(auditflow_notify_outbox_depth)", "pending"),
                        "Deliveries waiting to be sent (details: the Notifications dashboard).",
                    ),
                    single(
                        "Rules loaded",
                        "short",
                        ("max(auditflow_rules_loaded)", "rules"),
                        "Enabled rules active in analysis.",
                    ),
                    single(
                        "Dependencies down",
                        "short",
                        ("count(auditflow_dependency_up == 0) or vector(0)", "down"),
                        "Dependencies (broker, state, store) a service cannot reach now.",
                    ),
                ],
            ),
        ],
    )


def per_service() -> dashboard.Dashboard:
    sel = '{job=~"$job", instance=~"$instance"}'
    board = (
        _dashboard(
            "auditflow-service",
            "AuditFlow / Per service",
            "Resources, batch work, dependencies and errors of one AuditFlow service (job) or instance.",
        )
        .with_variable(_query_variable("job", "Service", "label_values(auditflow_events_analyzed_total, job)"))
        .with_variable(
            _query_variable(
                "instance", "Instance", 'label_values(auditflow_events_analyzed_total{job=~"$job"}, instance)'
            )
        )
    )
    return _layout(
        board,
        [
            (
                "Resources",
                [
                    graph(
                        "CPU",
                        "percentunit",
                        [(f"rate(process_cpu_seconds_total{sel}[{RATE}])", "{{job}} {{instance}}")],
                        "CPU time per second of each process (1 = one core).",
                        span=8,
                    ),
                    graph(
                        "Resident memory",
                        "bytes",
                        [(f"process_resident_memory_bytes{sel}", "{{job}} {{instance}}")],
                        "RSS of each process.",
                        span=8,
                    ),
                    graph(
                        "Open file descriptors",
                        "short",
                        [(f"process_open_fds{sel}", "{{job}} {{instance}}")],
                        "Sockets and files each process holds open.",
                        span=8,
                    ),
                ],
            ),
            (
                "Work",
                [
                    graph(
                        "Batch duration by stage",
                        "s",
                        quantiles("auditflow_batch_seconds", "stage", sel),
                        "Time to handle one consumed batch, by stage (analysis, notification).",
                    ),
                    graph(
                        "Batches by stage",
                        "ops",
                        [(f"sum by (stage) (rate(auditflow_batch_seconds_count{sel}[{RATE}]))", "{{stage}}")],
                        "Batches handled per second.",
                    ),
                    graph(
                        "Queue depth",
                        "short",
                        [(f"auditflow_queue_depth{sel}", "{{queue}} {{instance}}")],
                        "Messages ready in the queue each consumer reads.",
                    ),
                    graph(
                        "Rules",
                        "short",
                        [
                            (f"auditflow_rules_loaded{sel}", "loaded {{instance}}"),
                            (f"auditflow_rules_last_reload_ok{sel}", "last reload ok {{instance}}"),
                        ],
                        "Enabled rules active, and 1 when the last reload succeeded.",
                    ),
                ],
            ),
            (
                "Health and errors",
                [
                    up_down(
                        "Dependencies",
                        (f"auditflow_dependency_up{sel}", "{{instance}} {{dependency}}"),
                        "Whether each service reaches its broker, state and store (runbook: AuditFlowDependencyDown).",
                        span=24,
                    ),
                    graph(
                        "Dead letters",
                        "short",
                        [
                            (
                                f"sum by (job, queue, reason) (increase(auditflow_dead_letters_total{sel}[{RATE}]))",
                                "{{job}} {{queue}} {{reason}}",
                            )
                        ],
                        "Messages or items this service sent to the dead-letter queue.",
                        bars=True,
                    ),
                    graph(
                        "Rule reload errors",
                        "short",
                        [
                            (
                                'sum by (job, instance) (increase(auditflow_rules_reloads_total{job=~"$job", '
                                f'instance=~"$instance", result="error"}}[{RATE}]))',
                                "{{job}} {{instance}}",
                            )
                        ],
                        "Rule files that failed to load; the previous rules stay active.",
                        bars=True,
                    ),
                ],
            ),
        ],
    )


def notifications() -> dashboard.Dashboard:
    sel = '{channel=~"$channel"}'
    board = _dashboard(
        "auditflow-notifications",
        "AuditFlow / Notifications",
        "The outbox and dispatcher: deliveries per channel, retries, dead deliveries, latency, outbox depth.",
    ).with_variable(
        _query_variable("channel", "Channel", "label_values(auditflow_notify_outbox_channel_depth, channel)")
    )
    return _layout(
        board,
        [
            (
                "Deliveries",
                [
                    graph(
                        "Deliveries by channel and result",
                        "ops",
                        [
                            (
                                f"sum by (channel, result) (rate(auditflow_notify_deliveries_total{sel}[{RATE}]))",
                                "{{channel}} {{result}}",
                            )
                        ],
                        "Delivery attempts: sent, failed (will retry), retried (a later attempt), dead.",
                    ),
                    graph(
                        "Retries and failures",
                        "short",
                        [
                            (
                                "sum by (channel, result) (increase(auditflow_notify_deliveries_total"
                                f'{{channel=~"$channel", result=~"failed|retried"}}[{RATE}]))',
                                "{{channel}} {{result}}",
                            )
                        ],
                        "Attempts the receiver refused or did not answer, and the later attempts they caused.",
                        bars=True,
                    ),
                    graph(
                        "Dead deliveries",
                        "short",
                        [
                            (
                                "sum by (channel) (increase(auditflow_notify_deliveries_total"
                                f'{{channel=~"$channel", result="dead"}}[{RATE}]))',
                                "{{channel}}",
                            )
                        ],
                        "Deliveries given up after the last retry (runbook: AuditFlowNotificationsDead).",
                        bars=True,
                    ),
                    graph(
                        "Delivery latency",
                        "s",
                        quantiles("auditflow_notify_delivery_latency_seconds", selector=sel),
                        "From the alert change to the receiver's acceptance, over the selected channels.",
                    ),
                    graph(
                        "Delivery latency p95 by channel",
                        "s",
                        quantiles("auditflow_notify_delivery_latency_seconds", "channel", sel)[1:2],
                        "The 95th percentile of each channel apart: a slow receiver shows alone.",
                        span=24,
                    ),
                ],
            ),
            (
                "Outbox",
                [
                    single(
                        "Outbox depth",
                        "short",
                        ("sum(auditflow_notify_outbox_depth)", "pending"),
                        "Deliveries waiting to be sent, every channel.",
                    ),
                    single(
                        "Dead in the outbox",
                        "short",
                        ('sum(auditflow_notify_outbox_channel_depth{status="dead"})', "dead"),
                        "Outbox rows given up, awaiting a decision (docs/notifications.md).",
                    ),
                    graph(
                        "Outbox depth by channel",
                        "short",
                        [
                            (
                                f"sum by (channel, status) (auditflow_notify_outbox_channel_depth{sel})",
                                "{{channel}} {{status}}",
                            )
                        ],
                        "Pending and dead outbox rows per channel.",
                    ),
                ],
            ),
        ],
    )


DASHBOARDS: dict[str, Callable[[], dashboard.Dashboard]] = {
    "auditflow-overview.json": overview,
    "auditflow-service.json": per_service,
    "auditflow-notifications.json": notifications,
}


def render() -> dict[str, str]:
    """File name -> JSON text of each dashboard, stable across runs (sorted keys)."""
    return {
        name: json.dumps(build().build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"
        for name, build in DASHBOARDS.items()
    }
