"""JSON-lines logging: one record per line (tracebacks included, without the data they may quote),
level changeable at runtime."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import orjson

from auditflow.model.timeutil import format_utc, utcnow
from auditflow.tracebacks import format_redacted

# Loggers whose level follows the runtime setting; uvicorn's are included so that a DEBUG switch
# shows the HTTP layer too.
_MANAGED_LOGGERS = ("auditflow", "uvicorn", "uvicorn.error")
_CONTEXT_FIELDS = ("event_id", "alert_id", "rule_id", "queue", "dependency")


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: ts, level, service, logger, message, context fields."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": format_utc(utcnow()),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _CONTEXT_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                payload[name] = str(value)
        if record.exc_info and record.exc_info[1] is not None:
            payload["exception"] = format_redacted(record.exc_info[1])
        # orjson escapes newlines inside strings, so a traceback never breaks the one-record-per-line rule.
        return orjson.dumps(payload, default=str).decode()


def configure_logging(service: str, level: str = "INFO", stream: TextIO | None = None) -> None:
    """Route every logger (ours, uvicorn's, libraries') through one JSON handler on stderr."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    set_log_level(level)


def set_log_level(level: str) -> None:
    for name in _MANAGED_LOGGERS:
        logging.getLogger(name).setLevel(level)


def current_log_level() -> str:
    return logging.getLevelName(logging.getLogger("auditflow").getEffectiveLevel())
