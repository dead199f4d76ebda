"""Tracebacks for log records without the data they may carry: frames and exception types are kept,
the messages of foreign exceptions are not, because a KeyError, a ValueError or a driver error raised
while handling an event quotes the event's values (user names, command lines, addresses)."""

from __future__ import annotations

import traceback

from pydantic import ValidationError

from auditflow.errors import AuditFlowError

WITHHELD = "(message withheld: it may quote event data)"
_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"


def describe(exc: BaseException) -> str:
    """The last line of a traceback: the type, and the message only where we know what it holds."""
    name = f"{type(exc).__module__}.{type(exc).__qualname__}".removeprefix("builtins.")
    if isinstance(exc, AuditFlowError):
        # Our own messages name files, fields, rules and backends, never event values.
        return f"{name}: {exc}"
    if isinstance(exc, ValidationError):
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(root)'}: {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)
        )
        return f"{name}: {exc.error_count()} validation error(s): {problems}"
    return f"{name} {WITHHELD}" if str(exc) else name


def format_redacted(exc: BaseException) -> str:
    """Like `traceback.format_exception`, chained exceptions included, with `describe` as each last line."""
    chain: list[tuple[BaseException, str]] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    link = ""
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append((current, link))
        if current.__cause__ is not None:
            current, link = current.__cause__, _CAUSE
        elif current.__context__ is not None and not current.__suppress_context__:
            current, link = current.__context__, _CONTEXT
        else:
            current = None
    parts: list[str] = []
    # Oldest first, as Python prints them; each one's link says how the next (newer) one relates to it.
    for index, (error, _) in enumerate(reversed(chain)):
        if index:
            parts.append(chain[len(chain) - index][1])
        if error.__traceback__ is not None:
            parts.append("Traceback (most recent call last):\n")
            parts.extend(traceback.format_tb(error.__traceback__))
        parts.append(describe(error) + "\n")
    return "".join(parts).rstrip()
