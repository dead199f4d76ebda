"""Hot reload of the routing file by polling, like the rules: a cheap fingerprint (resolved path,
mtime, size) each poll, a parse only when it changed, and a bad file keeps the previous routing."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from auditflow.errors import ConfigError
from auditflow.model.status import DependencyStatus
from auditflow.notify.routing import Routing, load_routing

log = logging.getLogger("auditflow.notify")

Fingerprint = tuple[str, int, int]


def fingerprint(path: Path) -> Fingerprint:
    """Changes with the content and with a ConfigMap's symlink swap."""
    try:
        resolved = path.resolve()
        stat = resolved.stat()
    except OSError:
        return (str(path), -1, -1)
    return (str(resolved), stat.st_mtime_ns, stat.st_size)


class RoutingFile:
    """The active routing of one file; `poll()` replaces it when the file changed and loads cleanly."""

    def __init__(self, path: Path, interval_s: float = 2.0, *, resolve_secrets: bool = True) -> None:
        self.path = path
        self.interval_s = interval_s
        # Off where nothing is sent (a notification service beside separate dispatchers): only the
        # senders need the channels' secrets.
        self.resolve_secrets = resolve_secrets
        self._fingerprint = fingerprint(path)
        self.routing = load_routing(path, resolve_secrets=resolve_secrets)  # a bad file stops the start
        self.last_error: str | None = None
        self._next_check = time.monotonic() + interval_s

    def poll(self) -> Routing | None:
        """The new routing when the file changed into a valid one since the last poll, else None."""
        now = time.monotonic()
        if now < self._next_check:
            return None
        self._next_check = now + self.interval_s
        current = fingerprint(self.path)
        if current == self._fingerprint:
            return None
        self._fingerprint = current
        try:
            routing = load_routing(self.path, resolve_secrets=self.resolve_secrets)
        except ConfigError as exc:
            self.last_error = str(exc)
            log.error("routing file change refused, the previous routing stays active: %s", exc)
            return None
        self.last_error = None
        if routing == self.routing:
            return None
        self.routing = routing
        log.info("routing file reloaded: %d channel(s), %d route(s)", len(routing.channels), len(routing.routes))
        return routing

    def status(self) -> DependencyStatus:
        """For /readyz, like the rules: a refused change degrades, it does not stop notifications."""
        error = self.last_error
        return DependencyStatus(
            name="notifications",
            status="down" if error else "up",
            critical=False,
            detail=str(self.path),
            last_error=error,
            impact="the last routing file change was refused; the previous routing stays active" if error else None,
        )
