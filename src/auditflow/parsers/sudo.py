"""sudo (1.9) messages: commands run, wrong passwords, users not allowed to use sudo, and the
pam_unix lines sudo logs under its own name."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from auditflow.model.event import Event
from auditflow.parsers.base import Unparsed
from auditflow.parsers.emit import Message
from auditflow.parsers.pam import UNKNOWN, parse_pam_unix

_ENTRY = re.compile(r"\s*(\S+) : (.*)", re.DOTALL)
_ATTEMPTS = re.compile(r"(\d{1,9}) incorrect password attempts?")
# Reasons sudo gives for refusing a user or a command outright.
_DENIED = ("user NOT in sudoers", "command not allowed", "user NOT authorized on host")
# sudo's `KEY=value ; ...` fields as the event keeps them.
_FIELDS = {
    "TTY": "tty",
    "PWD": "pwd",  # nosec B105  # names the working directory
    "USER": "runas",
    "GROUP": "runas_group",
    "ENV": "env",
    "TSID": "tsid",
}


def parse_sudo(msg: Message) -> Sequence[Event] | Unparsed:
    text = msg.text
    if text.startswith("pam_unix("):
        return parse_pam_unix(msg, text)
    match = _ENTRY.fullmatch(text)
    if match is None:
        return UNKNOWN
    user, rest = match.groups()
    # COMMAND comes last and may itself contain " ; ", so it is cut off before splitting.
    at = rest.find("COMMAND=")
    command = rest[at + 8 :] if at >= 0 else None
    parts = (rest[:at] if at >= 0 else rest).split(" ; ")
    reason = None
    fields: dict[str, str] = {}
    for part in parts:
        name, sep, value = part.strip().partition("=")
        if sep and name in _FIELDS:
            fields[_FIELDS[name]] = value
        elif part.strip() and reason is None and not sep:
            reason = part.strip()
    details: dict[str, Any] = {"sudo": fields}
    if command is not None:
        details["command"] = command
        details["process"] = {"command_line": command}
    if "tty" in fields:
        details["tty"] = fields["tty"]
    if "pwd" in fields:
        details.setdefault("process", {})["working_directory"] = fields["pwd"]
    if "runas" in fields:
        details["user"] = {"target": {"name": fields["runas"]}}
    if reason is None:
        if command is None:
            return UNKNOWN
        return (msg.event("sudo_command", "command_run", result="SUCCESS", user=user, extra=details),)
    attempts = _ATTEMPTS.fullmatch(reason)
    if attempts is not None:
        details["attempts"] = int(attempts.group(1))
        return (msg.event("sudo_auth_failure", "authentication_failed", result="FAILURE", user=user, extra=details),)
    if reason in _DENIED:
        details["reason"] = reason
        return (msg.event("sudo_denied", "command_denied", result="FAILURE", user=user, extra=details),)
    if reason == "a password is required":
        return ()  # `sudo -n` without cached credentials: no password was tried
    return UNKNOWN
