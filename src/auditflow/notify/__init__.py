"""Notifications: the routing file, the transactional outbox, the webhook channel and the dispatcher
that delivers outbox rows with retries (docs/notifications.md)."""

from __future__ import annotations
