"""From a program name and its message to events: the dispatch shared by every source whose
records carry a program and a message (syslog lines, journald records).

The program name picks a message parser; rsyslog's `message repeated N times: [ ... ]` is
expanded here for every program, into N copies of what the inner message makes (distinct ids).
A program without a parser, and a message its parser does not know, make one generic
`syslog_message` event, so that rules (Sigma keyword rules among them) can still search its text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime
from uuid import uuid4

from auditflow.model.event import Event
from auditflow.model.timeutil import to_utc
from auditflow.parsers.accounts import parse_accounts
from auditflow.parsers.base import SourceContext, Unparsed, event_id_for
from auditflow.parsers.emit import Message, clean_text
from auditflow.parsers.pam import UNKNOWN, parse_pam_unix
from auditflow.parsers.sshd import parse_sshd
from auditflow.parsers.su import parse_su
from auditflow.parsers.sudo import parse_sudo
from auditflow.parsers.systemd import parse_systemd

MessageParser = Callable[[Message], Sequence[Event] | Unparsed]

# program name as logged -> (service name for events, message parser)
PROGRAMS: dict[str, tuple[str, MessageParser]] = {
    "sshd": ("sshd", parse_sshd),
    # OpenSSH 9.8 split the per-connection work into these binaries; they log the same messages.
    "sshd-session": ("sshd", parse_sshd),
    "sshd-auth": ("sshd", parse_sshd),
    "sudo": ("sudo", parse_sudo),
    "su": ("su", parse_su),
    "systemd": ("systemd", parse_systemd),
    **{
        name: (name, parse_accounts)
        for name in ("useradd", "userdel", "usermod", "groupadd", "groupdel", "gpasswd", "passwd", "chpasswd")
    },
}
SSHD_PROGRAMS = frozenset(name for name, (service, _) in PROGRAMS.items() if service == "sshd")

_REPEATED = re.compile(r"message repeated (\d{1,9}) times: \[ ?(.*)\]", re.DOTALL)
# Bounds the events one line can make: a repeat count is an attacker-influenced number.
MAX_REPEAT = 1000

_OLD_PAM_SUFFIX = "(pam_unix)"
GENERIC_EVENT_TYPE = "syslog_message"


def parse_generic(msg: Message) -> Sequence[Event]:
    """The line of a program no parser reads (or a message its parser does not know) as it is:
    `event.action` `message`, the text in `message`, the line in `event.original`."""
    return (msg.event(GENERIC_EVENT_TYPE, "message"),)


def generic_entry(program: str) -> tuple[str, MessageParser]:
    """The entry of a program without a parser: its events name it in lower case (`CRON` is `cron`)."""
    return program.lower(), parse_generic


def legacy_pam_entry(program: str) -> tuple[str, MessageParser] | None:
    """Linux-PAM before 0.99 logged as `sshd(pam_unix)[pid]: authentication failure; ...`: today's
    `pam_unix(sshd:auth): ...` message with the module in the program name. None for other names."""
    if not program.endswith(_OLD_PAM_SUFFIX):
        return None
    service = program[: -len(_OLD_PAM_SUFFIX)]

    def parse(msg: Message) -> Sequence[Event] | Unparsed:
        kind = "session" if msg.text.startswith("session ") else "auth"
        return parse_pam_unix(msg, f"pam_unix({service}:{kind}): {msg.text}")

    return service, parse


BAD_REPEAT = Unparsed("bad-repeat")


def parse_message(
    program: str,
    message: str,
    *,
    timestamp: datetime,
    host: str | None,
    pid: int | None,
    raw: str,
    context: SourceContext,
    key: str | None,
) -> Sequence[Event] | Unparsed:
    """The events of one program message. `raw` is the whole record as read (kept as
    `event.original`); `timestamp` is aware; `key` makes the event ids deterministic."""
    service, parse = PROGRAMS.get(program) or legacy_pam_entry(program) or generic_entry(program)
    message = clean_text(message)
    msg = Message(
        program,
        message,
        timestamp=to_utc(timestamp),
        host=host,
        pid=pid,
        raw=clean_text(raw),
        context=context,
        key=key,
        service=service,
    )
    return dispatch(msg, parse)


def dispatch(msg: Message, parse: MessageParser) -> Sequence[Event] | Unparsed:
    """Run `parse` over `msg`, expanding a `message repeated N times` wrapper (the caller has made
    `msg` safe to store)."""
    if not msg.text.startswith("message repeated "):
        return _parse(msg, parse)
    match = _REPEATED.fullmatch(msg.text)
    if match is None:
        return BAD_REPEAT
    count = min(int(match.group(1)), MAX_REPEAT)
    msg.text = match.group(2)
    once = _parse(msg, parse)
    if isinstance(once, Unparsed) or not once:
        return once
    if msg.key is None:
        return [event.model_copy(update={"event_id": uuid4()}) for _ in range(count) for event in once]
    width = len(once)
    return [
        event if n == 0 else event.model_copy(update={"event_id": event_id_for(msg.key, n * width + i)})
        for n in range(count)
        for i, event in enumerate(once)
    ]


def _parse(msg: Message, parse: MessageParser) -> Sequence[Event] | Unparsed:
    outcome = parse(msg)
    if outcome.__class__ is Unparsed and outcome == UNKNOWN:
        return parse_generic(msg)
    return outcome
