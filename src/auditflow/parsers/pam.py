"""pam_unix messages, which every PAM-using program (sshd, sudo, su, passwd, login...) logs under
its own name: authentication failures, sessions opened and closed, password changes."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from auditflow.model.event import Event
from auditflow.parsers.base import Unparsed
from auditflow.parsers.emit import Message

_PAM_UNIX = re.compile(r"pam_unix\(([^:()\s]+):(\w+)\): (.*)", re.DOTALL)
_SESSION = re.compile(r"session (opened|closed) for user (\S*?)(?:\(uid=(\d+)\))?(?: by (\S*?)(?:\(uid=(\d+)\))?)?\s*$")
_PASSWORD_CHANGED = re.compile(r"password changed for (\S+)\s*$")
_KEY_VALUE = re.compile(r"(\w+)=(\S*)")

# Lines that belong to an attempt already counted from another line, or say nothing worth an event.
_QUIET = (
    "check pass; user unknown",
    "conversation failed",
    "auth could not identify password",
    "account ",
    "bad username",
    "user unknown",
)
UNKNOWN = Unparsed("unknown-message")


def parse_pam_unix(msg: Message, text: str) -> Sequence[Event] | Unparsed:
    """A `pam_unix(service:type): ...` message (the caller checked the prefix)."""
    match = _PAM_UNIX.match(text)
    if match is None:
        return UNKNOWN
    service, kind, rest = match.groups()
    pam = {"module": "pam_unix", "service": service, "type": kind}
    if kind == "auth" and rest.startswith("authentication failure;"):
        fields = dict(_KEY_VALUE.findall(rest))
        user = fields.get("user") or None
        extra: dict[str, object] = {"pam": {**pam, **_present(fields, ("logname", "ruser", "tty", "uid", "euid"))}}
        rhost = fields.get("rhost")
        if rhost:
            # rhost is whatever PAM was told: an address, or a name when sshd resolved it (UseDNS).
            extra["source"] = {"ip": rhost} if _is_ip(rhost) else {"domain": rhost}
        return (msg.event("pam_authentication", "authentication_failure", result="FAILURE", user=user, extra=extra),)
    if kind == "session":
        session = _SESSION.match(rest)
        if session is None:
            return UNKNOWN
        state, user, uid, by, by_uid = session.groups()
        if uid is not None:
            pam["uid"] = uid
        if by:
            pam["by"] = by
        elif by_uid is not None:
            pam["by"] = f"uid={by_uid}"
        return (msg.event("user_session", f"session_{state}", result="SUCCESS", user=user or None, extra={"pam": pam}),)
    if kind == "chauthtok":
        changed = _PASSWORD_CHANGED.match(rest)
        if changed is not None:
            if service == "passwd":
                # passwd logs the same change itself, with who made it: that line makes the event.
                return ()
            # Who made the change is not on this line: the account is the target, not the actor.
            extra = {"pam": pam, "user": {"target": {"name": changed.group(1)}}}
            return (msg.event("password_changed", "password_changed", result="SUCCESS", extra=extra),)
    if rest.startswith(_QUIET):
        return ()
    return UNKNOWN


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _present(fields: dict[str, str], names: tuple[str, ...]) -> dict[str, str]:
    return {name: fields[name] for name in names if fields.get(name)}
