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

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_panels import RATE, graph, layout, new_dashboard, quantiles, query_variable, single, up_down


def overview() -> dashboard.Dashboard:
    board = new_dashboard(
        "auditflow-overview",
        "AuditFlow / Pipeline overview",
        "Events in, detections, alerts, queues and dead letters across every AuditFlow service.",
    )
    return layout(
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
                        [(f"sum by (severity) (rate(auditflow_alerts_new_total[{RATE}]))", "{{severity}}")],
                        "New alerts stored by notification, by the severity of their rule (a repeat of a stored "
                        "alert is not counted).",
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
        new_dashboard(
            "auditflow-service",
            "AuditFlow / Per service",
            "Resources, batch work, dependencies and errors of one AuditFlow service (job) or instance.",
        )
        .with_variable(query_variable("job", "Service", "label_values(auditflow_events_analyzed_total, job)"))
        .with_variable(
            query_variable(
                "instance", "Instance", 'label_values(auditflow_events_analyzed_total{job=~"$job"}, instance)'
            )
        )
    )
    return layout(
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
    board = new_dashboard(
        "auditflow-notifications",
        "AuditFlow / Notifications",
        "The outbox and dispatcher: deliveries per channel, retries, dead deliveries, latency, outbox depth.",
    ).with_variable(
        query_variable("channel", "Channel", "label_values(auditflow_notify_outbox_channel_depth, channel)")
    )
    return layout(
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
