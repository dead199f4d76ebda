"""systemd (252+) unit state changes of services: started, stopping, stopped (requested, so
expected), and failed, killed or crashed (not expected).

Only `.service` units make events; systemd's other messages (targets, slices, sockets, mounts,
"Starting ...", "Deactivated successfully") are understood and make none. A failure is logged as
several lines; "Failed to start ..." and "Main process exited, code=exited" repeat what
"Failed with result ..." says, so they make no event of their own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from auditflow.model.event import Event
from auditflow.parsers.base import Unparsed
from auditflow.parsers.emit import Message
from auditflow.parsers.pam import UNKNOWN

_TRANSITION = re.compile(r"(Started|Stopping|Stopped) (\S+)\.service(?: - (.*?))?\.?", re.DOTALL)
_OTHER_UNIT = re.compile(r"\S+\.(?:scope|socket|mount|timer|slice|target|path|swap|device|automount): ")
_UNIT_MESSAGE = re.compile(r"(\S+)\.service: (.*)", re.DOTALL)
_EXITED = re.compile(r"Main process exited, code=(\w+), status=(\S+)")
_FAILED = re.compile(r"Failed with result '([^']*)'\.?")

_STATES = {"Started": ("started", False), "Stopping": ("stopping", True), "Stopped": ("stopped", True)}
_SIGNALLED = {"killed": "killed", "dumped": "crashed"}
_QUIET = (
    "Starting ",
    "Started ",
    "Stopping ",
    "Stopped ",
    "Reached target ",
    "Stopped target ",
    "Listening on ",
    "Closed ",
    "Created slice ",
    "Removed slice ",
    "Reloading",
    "Reloaded ",
    "Mounting ",
    "Mounted ",
    "Unmounting ",
    "Unmounted ",
    "Finished ",
    "Failed to start ",
    "Condition check resulted in ",
    "Startup finished in ",
    "Received SIGTERM",
    "Reexecuting",
    "Queued start job ",
    "Activating ",
    "Deactivated ",
    "New session ",
    "Session ",
)
# Unit messages that repeat a state change logged by another line, or are bookkeeping.
_QUIET_UNIT = (
    "Deactivated successfully",
    "Consumed ",
    "Scheduled restart job",
    "Killing process ",
    "Succeeded",
    "Main process exited, code=exited",
    "Unit cannot be reloaded",
    "Changed ",
    "Control process exited",
    "Start request repeated too quickly",
    "State ",
    "Processes still around after",
    "Found left-over process",
    "This usually indicates unclean termination",
)


def parse_systemd(msg: Message) -> Sequence[Event] | Unparsed:
    text = msg.text
    if (match := _TRANSITION.fullmatch(text)) is not None:
        verb, unit, description = match.groups()
        state, expected = _STATES[verb]
        description = description.rstrip(".") if description else None
        return (_change(msg, unit, state, expected, description=description),)
    if (match := _UNIT_MESSAGE.fullmatch(text)) is not None:
        unit, rest = match.groups()
        exited = _EXITED.match(rest)
        if exited is not None and exited.group(1) in _SIGNALLED:
            code, status = exited.groups()
            return (_change(msg, unit, _SIGNALLED[code], False, exit_code=code, exit_status=status),)
        failed = _FAILED.fullmatch(rest)
        if failed is not None:
            return (_change(msg, unit, "failed", False, result=failed.group(1)),)
        if rest.startswith(_QUIET_UNIT):
            return ()
        return UNKNOWN
    if text.startswith(_QUIET) or _OTHER_UNIT.match(text) is not None:
        return ()
    return UNKNOWN


def _change(msg: Message, unit: str, state: str, expected: bool, **systemd: str | None) -> Event:
    info: dict[str, Any] = {"unit": f"{unit}.service"}
    info.update((name, value) for name, value in systemd.items() if value is not None)
    extra: dict[str, Any] = {"service": unit, "state": state, "expected": expected, "systemd": info}
    result = None if expected or state == "started" else "FAILURE"
    return msg.event("service_state_change", f"service_{state}", result=result, extra=extra)
