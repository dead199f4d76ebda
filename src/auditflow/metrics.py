"""Prometheus metrics of every service, defined once per process (module level) on the default registry."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_INGESTED = Counter("auditflow_events_ingested", "Events accepted for analysis", ["source"])
EVENTS_ANALYZED = Counter("auditflow_events_analyzed", "Events evaluated against the rules")
DEAD_LETTERS = Counter(
    "auditflow_dead_letters",
    "Messages or single events/alerts routed to the dead-letter queue, by origin queue and kind of reason",
    ["queue", "reason"],
)
DEAD_LETTERS_STORED = Gauge("auditflow_dead_letters_stored", "Dead letters kept in the store, awaiting replay or purge")
ALERTS_PUBLISHED = Counter("auditflow_alerts_published", "Alert messages published by analysis", ["kind"])
DETECTIONS = Counter(
    "auditflow_detections",
    "Alerts published by analysis, by rule, rule kind and severity (a repeat of a suppressed alert counts again)",
    ["rule_id", "rule_kind", "severity"],
)
ALERTS_STORED = Counter("auditflow_alerts_stored", "Alert rows written by notification", ["result"])
ALERTS_NEW = Counter(
    "auditflow_alerts_new",
    "New alerts stored by notification (not a repeat of a stored alert), by severity",
    ["severity"],
)
RULES_LOADED = Gauge("auditflow_rules_loaded", "Enabled rules currently active")
RULES_RELOADS = Counter("auditflow_rules_reloads", "Rule reload attempts", ["result"])
RULES_LAST_RELOAD_OK = Gauge("auditflow_rules_last_reload_ok", "1 when the last rules reload succeeded, else 0")
DEPENDENCY_UP = Gauge("auditflow_dependency_up", "1 when the dependency answers, else 0", ["dependency"])
BATCH_SECONDS = Histogram(
    "auditflow_batch_seconds",
    "Time to handle one batch",
    ["stage"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
DETECTION_LATENCY = Histogram(
    "auditflow_detection_latency_seconds",
    "From an event batch accepted at ingest to its alerts published by analysis (the detection objective)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
QUEUE_DEPTH = Gauge("auditflow_queue_depth", "Messages ready in a queue, sampled by its consumer", ["queue"])
GENERATOR_EVENTS = Counter("auditflow_generator_events", "Synthetic events produced", ["scenario"])
GENERATOR_DROPPED = Counter(
    "auditflow_generator_dropped_events", "Synthetic events dropped because publishing them failed"
)
RETENTION_REMOVED = Counter(
    "auditflow_retention_removed",
    "Rows removed by alert retention (alerts, alert_events, alert_history), whole dropped partitions included",
    ["table"],
)
