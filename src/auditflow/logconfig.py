"""Logging set-up: JSON lines (one record per line, tracebacks included without the data they may
quote) or, on a terminal, human-readable console lines; every record carries the correlation id of
the batch being handled; the level is changeable at runtime."""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal, TextIO

import orjson

from auditflow.correlation import CorrelationFilter
from auditflow.model.timeutil import format_utc, utcnow
from auditflow.tracebacks import format_redacted

# Loggers whose level follows the runtime setting; uvicorn's are included so that a DEBUG switch
# shows the HTTP layer too.
_MANAGED_LOGGERS = ("auditflow", "uvicorn", "uvicorn.error")
_CONTEXT_FIELDS = ("correlation_id", "event_id", "alert_id", "rule_id", "queue", "dependency")

LogFormat = Literal["auto", "json", "console"]


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


class ConsoleFormatter(logging.Formatter):
    """One readable line per record for a person at a terminal:
    `2026-01-02 03:04:05.678 INFO    analysis  auditflow.analysis: message  correlation_id=... rule_id=...`,
    a traceback (redacted like the JSON one) on the lines below."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        stamp = format_utc(utcnow()).replace("T", " ").removesuffix("Z")
        line = f"{stamp[:23]} {record.levelname:<8}{self.service}  {record.name}: {record.getMessage()}"
        context = [f"{name}={value}" for name in _CONTEXT_FIELDS if (value := record.__dict__.get(name)) is not None]
        if context:
            line += "  " + " ".join(context)
        if record.exc_info and record.exc_info[1] is not None:
            line += "\n" + format_redacted(record.exc_info[1]).rstrip("\n")
        return line


def resolve_format(choice: LogFormat, stream: TextIO) -> Literal["json", "console"]:
    """`auto`: console lines when the stream is a terminal, JSON otherwise (a file, a pipe, a collector)."""
    if choice != "auto":
        return choice
    isatty = getattr(stream, "isatty", None)
    try:
        return "console" if isatty is not None and isatty() else "json"
    except ValueError:  # a closed stream
        return "json"


def configure_logging(
    service: str, level: str = "INFO", stream: TextIO | None = None, log_format: LogFormat = "auto"
) -> None:
    """Route every logger (ours, uvicorn's, libraries') through one handler on stderr, JSON or console
    lines as `log_format` says (see `resolve_format`)."""
    out = stream or sys.stderr
    handler = logging.StreamHandler(out)
    formatter = ConsoleFormatter(service) if resolve_format(log_format, out) == "console" else JsonFormatter(service)
    handler.setFormatter(formatter)
    handler.addFilter(CorrelationFilter())
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
