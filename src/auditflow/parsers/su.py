"""su messages (util-linux and shadow-utils wording): switches that succeeded or failed, and the
pam_unix lines su logs under its own name (sessions, authentication failures)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from auditflow.model.event import Event
from auditflow.parsers.base import Unparsed
from auditflow.parsers.emit import Message
from auditflow.parsers.pam import UNKNOWN, parse_pam_unix

# util-linux: "(to root) alice on pts/0", "FAILED SU (to root) alice on pts/0"
_UTIL_LINUX = re.compile(r"(FAILED SU )?\(to (\S*)\) (\S*) on (\S+)")
# shadow-utils: "Successful su for root by alice", "FAILED su for root by alice"
_SHADOW = re.compile(r"(Successful|FAILED) su for (\S*) by (\S*)")


def parse_su(msg: Message) -> Sequence[Event] | Unparsed:
    text = msg.text
    if text.startswith("pam_unix("):
        return parse_pam_unix(msg, text)
    match = _UTIL_LINUX.fullmatch(text)
    if match is not None:
        failed, target, user, tty = match.groups()
        return (_switch(msg, failed is None, user, target, tty),)
    match = _SHADOW.fullmatch(text)
    if match is not None:
        verdict, target, user = match.groups()
        return (_switch(msg, verdict == "Successful", user, target, None),)
    if text.startswith(("+ ", "- ")):
        return ()  # shadow-utils repeats each switch as "+ tty alice:root", already counted above
    return UNKNOWN


def _switch(msg: Message, success: bool, user: str, target: str, tty: str | None) -> Event:
    extra: dict[str, object] = {"user": {"target": {"name": target}}}
    if tty is not None:
        extra["tty"] = tty
    return msg.event(
        "su",
        "switch_user",
        result="SUCCESS" if success else "FAILURE",
        user=user or None,
        extra=extra,
    )
