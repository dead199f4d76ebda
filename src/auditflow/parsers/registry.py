"""The log formats by name: how to make a parser for one, and which format a sample of lines is
in (for `--format auto`). Each format registers a factory and a detector in `_FORMATS`."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from auditflow.parsers.auditd import AuditdParser
from auditflow.parsers.base import LogParser, SourceContext
from auditflow.parsers.journald import JournaldParser
from auditflow.parsers.k8s_audit import K8sAuditParser
from auditflow.parsers.syslog import SshdParser, SyslogParser, syslog_program


@dataclass(frozen=True, slots=True)
class LogFormat:
    """A format's parser factory, and a test of whether one line looks like the format (None when
    the format is never detected, only chosen)."""

    create: Callable[[SourceContext], LogParser]
    detect: Callable[[str], bool] | None


def _is_syslog(line: str) -> bool:
    return syslog_program(line) is not None


_AUDIT_RECORD = re.compile(r"(?:node=\S+ )?type=[A-Z0-9_]+ msg=audit\(")


def _is_auditd(line: str) -> bool:
    return _AUDIT_RECORD.match(line) is not None


def _is_journal_json(line: str) -> bool:
    # every `journalctl -o json` entry has these, whatever else it carries
    return line.startswith("{") and '"__REALTIME_TIMESTAMP"' in line and '"MESSAGE"' in line


def _is_k8s_audit(line: str) -> bool:
    return line.startswith("{") and '"audit.k8s.io/' in line and '"auditID"' in line


_FORMATS: dict[str, LogFormat] = {
    "syslog": LogFormat(SyslogParser, _is_syslog),
    # A filter over syslog: chosen explicitly, never detected (auto picks "syslog", which parses the same lines).
    "sshd": LogFormat(SshdParser, None),
    "auditd": LogFormat(AuditdParser, _is_auditd),
    "journald": LogFormat(JournaldParser, _is_journal_json),
    "k8s-audit": LogFormat(K8sAuditParser, _is_k8s_audit),
}
FORMATS: tuple[str, ...] = tuple(_FORMATS)
# A sample fits a format when at least this share of its non-blank lines look like it.
_DETECT_SHARE = 0.5


def create_parser(fmt: str, context: SourceContext) -> LogParser:
    entry = _FORMATS.get(fmt)
    if entry is None:
        raise ValueError(f"unknown log format {fmt!r}; known formats: {', '.join(FORMATS)}")
    return entry.create(context)


def detect_format(sample: Sequence[str]) -> str:
    """The format most lines of `sample` look like; ValueError naming what was seen when none fits."""
    lines = [line for line in sample if line.strip()]
    if not lines:
        raise ValueError("cannot detect the log format: the sample has no non-blank line")
    best, best_hits = None, 0
    for name, entry in _FORMATS.items():
        if entry.detect is None:
            continue
        hits = sum(1 for line in lines if entry.detect(line))
        if hits > best_hits:
            best, best_hits = name, hits
    if best is None or best_hits < len(lines) * _DETECT_SHARE:
        first = lines[0][:80]
        raise ValueError(
            f"cannot detect the log format of {len(lines)} sample line(s) (first: {first!r}); "
            f"known formats: {', '.join(FORMATS)} (choose one explicitly)"
        )
    return best
