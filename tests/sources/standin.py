"""A small sshd parser following the parser contract, standing in for the real registry in these
tests so that the sources are tested against the interface alone."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import ClassVar

from auditflow.model.event import Event
from auditflow.parsers.base import SourceContext, Unparsed, event_id_for

_LINE = re.compile(
    r"^(?P<ts>\w{3} [ \d]\d \d\d:\d\d:\d\d) (?P<host>\S+) sshd\[\d+\]: "
    r"(?P<verdict>Failed|Accepted) password for (?P<user>\S+) from (?P<ip>\S+) port \d+"
)


class StandInSshd:
    name: ClassVar[str] = "sshd"

    def __init__(self, context: SourceContext) -> None:
        self.context = context

    def feed(self, line: str, key: str | None = None) -> Sequence[Event] | Unparsed:
        match = _LINE.match(line)
        if match is None:
            return Unparsed("not-sshd" if " sshd[" not in line else "unknown-message")
        year = self.context.year or (self.context.reference_time or datetime.now(self.context.tz)).year
        stamp = datetime.strptime(f"{year} {match['ts']}", "%Y %b %d %H:%M:%S").replace(tzinfo=self.context.tz)
        values: dict[str, object] = {
            "event_type": "user_login",
            "timestamp": stamp,
            "server_hostname": match["host"],
            "user_id": match["user"],
            "action_result": "FAILURE" if match["verdict"] == "Failed" else "SUCCESS",
            "source_service": "sshd",
            "details": {"event": {"original": line}, "source": {"ip": match["ip"]}},
        }
        if key is not None:
            values["event_id"] = event_id_for(key, 0)
        return [Event.model_validate(values)]

    def flush(self) -> Sequence[Event]:
        return []


FORMATS = ("sshd",)


def create_parser(fmt: str, context: SourceContext) -> StandInSshd:
    assert fmt == "sshd", fmt
    return StandInSshd(context)


def detect_format(sample: Sequence[str]) -> str:
    if any(" sshd[" in line for line in sample):
        return "sshd"
    raise ValueError(f"no known format in {len(sample)} lines")


def registry() -> tuple[tuple[str, ...], object, object]:
    return FORMATS, create_parser, detect_format


def auth_log(user: str = "root", host: str = "web1", failures: int = 5, month: str = "Mar") -> str:
    """An auth.log with a brute force (`failures` failed passwords, then a success) and noise."""
    lines = [
        f"{month}  3 04:12:0{i} {host} sshd[4242]: Failed password for {user} from 203.0.113.9 port 5{i} ssh2"
        for i in range(failures)
    ]
    lines.insert(1, f"{month}  3 04:12:00 {host} CRON[99]: pam_unix(cron:session): session opened for user root")
    lines.append(f"{month}  3 04:12:09 {host} sshd[4242]: Accepted password for {user} from 203.0.113.9 port 60 ssh2")
    lines.append(f"{month}  3 04:12:09 {host} sshd[4242]: Received disconnect from 203.0.113.9 port 60:11: bye")
    return "\n".join(lines) + "\n"
