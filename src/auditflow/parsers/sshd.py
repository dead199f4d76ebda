"""OpenSSH server messages (OpenSSH 8 and 9 wording, `sshd` and `sshd-session`): logins accepted
and failed, invalid users, PAM failures, too many attempts, pre-authentication disconnects,
reverse-DNS break-in warnings and sessions.

One attempt is often logged three ways (the `Failed ...` line, the pam_unix line, `PAM N more
authentication failures`); only `user_login` counts attempts, the others have their own event
types or none, so a threshold on `user_login` counts each attempt once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from auditflow.model.event import Event, Severity
from auditflow.parsers.base import Unparsed
from auditflow.parsers.emit import Message
from auditflow.parsers.pam import UNKNOWN, parse_pam_unix

_LOGIN = re.compile(
    r"(Accepted|Failed) (\S+) for (invalid user )?(.*) from (\S+) port (\d+)(?: ssh2)?(?:: (.*?))?(?: \[preauth\])?",
    re.DOTALL,
)
_INVALID_USER = re.compile(r"Invalid user (.*) from (\S+?)(?: port (\d+))?(?: \[preauth\])?", re.DOTALL)
_MAX_AUTH = re.compile(
    r"(?:error: )?maximum authentication attempts exceeded for (invalid user )?(.*) from (\S+) port (\d+)"
    r"(?: ssh2)?(?: \[preauth\])?",
    re.DOTALL,
)
_DISCONNECT = re.compile(
    r"(Disconnected from|Connection closed by|Connection reset by|Disconnecting)"
    r"(?: (authenticating user|invalid user|user) (.*))? (\S+) port (\d+)(?::(.*?))?( \[preauth\])?",
    re.DOTALL,
)
# OpenSSH before 7.x left out the port: "Received disconnect from 1.2.3.4: 11: Bye Bye [preauth]".
# OpenSSH before 7.x: "Connection closed by 1.2.3.4 [preauth]", no port and no user.
_DISCONNECT_NO_PORT = re.compile(r"(Connection closed by|Disconnected from) (\S+)( \[preauth\])?")
_RECEIVED_DISCONNECT = re.compile(
    r"Received disconnect from (\S+?)(?: port (\d+))?: ?(\d+): ?(.*?)( \[preauth\])?", re.DOTALL
)
# The wording of OpenSSH before 7.x for "maximum authentication attempts exceeded" (no address).
_TOO_MANY_PREFIX = "Disconnecting: Too many authentication failures"
_TOO_MANY = re.compile(r"Disconnecting: Too many authentication failures for (invalid user )?(.*?)(?: \[preauth\])?")
_BREAK_IN_ADDRESS = re.compile(r"(?:Address (\S+) maps to|.*\[([0-9A-Fa-f:.]+)\])")

_DISCONNECT_PREFIXES = ("Disconnected from ", "Connection closed by ", "Connection reset by ", "Disconnecting ")
# Understood, but no event: service life cycle, connection set-up, and the duplicate logs of an
# attempt already counted from its `Failed ...` line ("PAM N more", "error: PAM: ...").
_QUIET = (
    "Server listening on ",
    "Received signal ",
    "Connection from ",
    "Starting session: ",
    "Postponed ",
    "User child is on pid ",
    "Close session: ",
    "Accepted key ",
    "Transferred: ",
    "Timeout before authentication",
    "fatal: Timeout before authentication",
    "banner exchange: ",
    "error: kex_exchange_identification: ",
    "kex_exchange_identification: ",
    "Unable to negotiate with ",
    "error: Received disconnect from ",
    "Did not receive identification string from ",
    "Bad protocol version identification ",
    "error: PAM: ",
    "PAM ",
    "pam_systemd(",
    "pam_env(",
    "srclimit_penalise: ",
    "drop connection #",
    "Failed none for ",
    "Read error from remote host ",
    # OpenSSH before 7.x: repeats the "Invalid user" line of the same attempt.
    "input_userauth_request: invalid user ",
)
_BREAK_IN = "POSSIBLE BREAK-IN ATTEMPT!"


def parse_sshd(msg: Message) -> Sequence[Event] | Unparsed:
    text = msg.text
    head = text[:1]
    if head == "F" or head == "A":
        if text.startswith(("Failed ", "Accepted ")) and not text.startswith("Failed none "):
            return _login(msg, text)
    elif head == "I":
        if text.startswith("Invalid user "):
            return _invalid_user(msg, text)
    elif head == "p" and text.startswith("pam_unix("):
        return parse_pam_unix(msg, text)
    if text.startswith(_DISCONNECT_PREFIXES):
        return _disconnect(msg, text)
    if text.startswith("Received disconnect from "):
        return _received_disconnect(msg, text)
    if "maximum authentication attempts exceeded" in text[:48] or text.startswith(_TOO_MANY_PREFIX):
        return _max_auth(msg, text)
    if text.endswith(_BREAK_IN):
        return _break_in(msg, text)
    if text.startswith(_QUIET):
        return ()
    return UNKNOWN


def _source(ip: str, port: str | None) -> dict[str, Any]:
    return {"ip": ip} if port is None else {"ip": ip, "port": int(port)}


def _login(msg: Message, text: str) -> Sequence[Event] | Unparsed:
    match = _LOGIN.fullmatch(text)
    if match is None:
        return UNKNOWN
    verdict, method, invalid, user, ip, port, key = match.groups()
    ssh: dict[str, Any] = {"method": method.split("/", 1)[0], "invalid_user": invalid is not None}
    if key:
        ssh["key"] = key
    success = verdict == "Accepted"
    return (
        msg.event(
            "user_login",
            "ssh_login",
            result="SUCCESS" if success else "FAILURE",
            user=user,
            extra={"source": _source(ip, port), "ssh": ssh},
        ),
    )


def _invalid_user(msg: Message, text: str) -> Sequence[Event] | Unparsed:
    match = _INVALID_USER.fullmatch(text)
    if match is None:
        return UNKNOWN
    user, ip, port = match.groups()
    extra = {"source": _source(ip, port), "ssh": {"invalid_user": True}}
    return (msg.event("ssh_invalid_user", "invalid_user", result="FAILURE", user=user, extra=extra),)


def _max_auth(msg: Message, text: str) -> Sequence[Event] | Unparsed:
    match = _MAX_AUTH.fullmatch(text) or _TOO_MANY.fullmatch(text)
    if match is None:
        return UNKNOWN
    invalid, user, *address = match.groups()
    extra: dict[str, Any] = {"ssh": {"invalid_user": invalid is not None}}
    if address:  # the older wording names no address
        extra["source"] = _source(*address)
    return (
        msg.event(
            "ssh_max_auth_exceeded",
            "max_auth_attempts_exceeded",
            result="FAILURE",
            user=user,
            severity=Severity.WARNING,
            extra=extra,
        ),
    )


def _disconnect(msg: Message, text: str) -> Sequence[Event] | Unparsed:
    match = _DISCONNECT.fullmatch(text)
    if match is None:
        old = _DISCONNECT_NO_PORT.fullmatch(text)
        if old is None:
            return UNKNOWN
        verb, ip, preauth = old.groups()
        extra = {"source": _source(ip, None), "ssh": {"preauth": preauth is not None}}
        return (msg.event("ssh_disconnect", "connection_closed" if verb[0] == "C" else "disconnected", extra=extra),)
    verb, kind, user, ip, port, reason, preauth = match.groups()
    ssh: dict[str, Any] = {"preauth": preauth is not None}
    if kind is not None:
        ssh["invalid_user"] = kind == "invalid user"
    if reason:
        ssh["reason"] = reason.strip()
    action = "connection_closed" if verb.startswith("Connection") else "disconnected"
    extra = {"source": _source(ip, port), "ssh": ssh}
    return (msg.event("ssh_disconnect", action, user=user, extra=extra),)


def _received_disconnect(msg: Message, text: str) -> Sequence[Event] | Unparsed:
    match = _RECEIVED_DISCONNECT.fullmatch(text)
    if match is None:
        return UNKNOWN
    ip, port, code, reason, preauth = match.groups()
    ssh = {"preauth": preauth is not None, "disconnect_code": int(code), "reason": reason}
    return (msg.event("ssh_disconnect", "disconnect_received", extra={"source": _source(ip, port), "ssh": ssh}),)


def _break_in(msg: Message, text: str) -> Sequence[Event] | Unparsed:
    match = _BREAK_IN_ADDRESS.match(text)
    extra: dict[str, Any] = {}
    if match is not None:
        extra["source"] = {"ip": match.group(1) or match.group(2)}
    return (msg.event("ssh_break_in_attempt", "reverse_mapping_failed", severity=Severity.WARNING, extra=extra),)
