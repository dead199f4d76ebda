"""Prometheus metrics of the notification dispatcher, per channel."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DELIVERIES = Counter(
    "auditflow_notify_deliveries",
    "Delivery attempts by outcome: sent, failed (will retry), retried (a later attempt), dead",
    ["channel", "result"],
)
DELIVERY_LATENCY = Histogram(
    "auditflow_notify_delivery_latency_seconds",
    "From the alert change to the receiver's acceptance",
    ["channel"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
)
OUTBOX_DEPTH = Gauge(
    "auditflow_notify_outbox_depth", "Alert changes waiting to be sent: pending deliveries and items of unsent digests"
)
PURGED = Counter(
    "auditflow_notify_purged_deliveries",
    "Finished deliveries deleted after delivery.keep_sent (sent) or delivery.keep_dead (dead)",
    ["status"],
)
OUTBOX_CHANNEL_DEPTH = Gauge(
    "auditflow_notify_outbox_channel_depth",
    "Outbox rows per channel and status: pending (waiting to be sent) and dead (given up)",
    ["channel", "status"],
)
