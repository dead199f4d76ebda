"""Hot reload of the rules path by polling.

Polling rather than inotify: a Kubernetes ConfigMap update swaps the `..data` symlink inside the
volume, which a watch on the directory does not report. Each poll compares a cheap fingerprint
(resolved paths, mtimes, sizes); only when it changes are the files read and hashed, and only when
the content changed are they parsed. A bad file keeps the previous rules active.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path

from auditflow.errors import RuleError
from auditflow.metrics import RULES_LAST_RELOAD_OK, RULES_LOADED, RULES_RELOADS
from auditflow.model.status import RuleInfo, RulesStatus
from auditflow.model.timeutil import utcnow
from auditflow.rules.loader import DEFAULT_RULES_DIR, load_rules, rule_files
from auditflow.rules.ruleset import RuleSet

logger = logging.getLogger("auditflow.rules")

OnChange = Callable[[RuleSet], Awaitable[None] | None]
Fingerprint = tuple[tuple[str, int, int], ...]


def fingerprint(path: Path) -> Fingerprint:
    """Resolved path, mtime and size of every rule file; changes whenever a symlink swap does."""
    entries: list[tuple[str, int, int]] = []
    try:
        files = rule_files(path)
    except OSError:
        return (("<unreadable>", 0, 0),)
    for file in files:
        try:
            resolved = file.resolve()
            stat = resolved.stat()
        except OSError:
            entries.append((str(file), -1, -1))
            continue
        entries.append((str(resolved), stat.st_mtime_ns, stat.st_size))
    return tuple(entries)


class RuleWatcher:
    """Holds the active `RuleSet` and replaces it when the files change and load cleanly."""

    def __init__(self, path: Path | None, interval_s: float = 2.0, *, on_change: OnChange | None = None) -> None:
        self.path = path
        self.interval_s = interval_s
        self.on_change = on_change
        self.last_error: str | None = None
        self.last_reload_at: datetime | None = None
        self._ruleset: RuleSet | None = None
        self._fingerprint: Fingerprint | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    @property
    def ruleset(self) -> RuleSet:
        if self._ruleset is None:
            raise RuntimeError("RuleWatcher.start() has not loaded the rules yet")
        return self._ruleset

    @property
    def watched(self) -> Path:
        return self.path if self.path is not None else DEFAULT_RULES_DIR

    async def start(self) -> None:
        """Load the rules (raising RuleError when they are invalid) and start polling."""
        if self._ruleset is None:
            self._fingerprint = fingerprint(self.watched)
            try:
                ruleset = await asyncio.to_thread(load_rules, self.path)
            except RuleError as exc:
                self._record_failure(exc)
                raise
            self._install(ruleset)
        if self._task is None and self.path is not None:  # the shipped pack never changes
            self._task = asyncio.create_task(self._run(), name="rules-watcher")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def __aenter__(self) -> RuleWatcher:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def poll(self) -> bool:
        """Reload when the fingerprint changed; True when new rules became active."""
        current = await asyncio.to_thread(fingerprint, self.watched)
        if current == self._fingerprint:
            return False
        self._fingerprint = current
        return await self.reload_now()

    async def reload_now(self) -> bool:
        """Load the files now; True when new rules became active, False when unchanged or invalid."""
        async with self._lock:
            try:
                ruleset = await asyncio.to_thread(load_rules, self.path)
            except RuleError as exc:
                self._record_failure(exc)
                return False
            RULES_RELOADS.labels(result="ok").inc()
            RULES_LAST_RELOAD_OK.set(1)
            self.last_error = None
            self.last_reload_at = utcnow()
            if self._ruleset is not None and ruleset.version == self._ruleset.version:
                return False  # touched but identical: keep the loaded objects
            self._install(ruleset)
            logger.info("rules reloaded: %d rules, version %s", len(ruleset), ruleset.version)
        if self.on_change is not None:
            result = self.on_change(ruleset)
            if inspect.isawaitable(result):
                await result
        return True

    def rule_info(self, rule_id: str) -> RuleInfo | None:
        """One active rule as the API shows it; None when no active rule has this id (or none loaded yet)."""
        return self._ruleset.info(rule_id) if self._ruleset is not None else None

    def status(self) -> RulesStatus:
        """The active rules and the last reload error, as the API and dashboard show them."""
        ruleset = self._ruleset
        return RulesStatus(
            rules=ruleset.infos() if ruleset is not None else [],
            version=ruleset.version if ruleset is not None else None,
            source=ruleset.source if ruleset is not None else str(self.watched),
            loaded_at=ruleset.loaded_at if ruleset is not None else None,
            last_error=self.last_error,
            warnings=list(ruleset.warnings) if ruleset is not None else [],
        )

    def _install(self, ruleset: RuleSet) -> None:
        self._ruleset = ruleset
        self.last_reload_at = utcnow()
        RULES_LOADED.set(len(ruleset.enabled))
        RULES_LAST_RELOAD_OK.set(1)
        if ruleset.warnings:
            # Logged once per new rule set, not at every poll: the status keeps them meanwhile.
            logger.warning(
                "%d rules in %s not loaded:\n%s", len(ruleset.warnings), self.watched, "\n".join(ruleset.warnings)
            )

    def _record_failure(self, exc: RuleError) -> None:
        self.last_error = str(exc)
        self.last_reload_at = utcnow()
        RULES_RELOADS.labels(result="error").inc()
        RULES_LAST_RELOAD_OK.set(0)
        kept = "no rules loaded" if self._ruleset is None else f"keeping rules version {self._ruleset.version}"
        logger.error("invalid rules in %s (%s):\n%s", self.watched, kept, exc)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.poll()
            except Exception:  # a poll must never end the watcher; the next one retries
                logger.exception("rules watcher poll failed")
