"""Sigma test helpers: convert a Sigma rule written in the test and run it through the Detector."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from auditflow.backends.state import WindowState
from auditflow.model import Event
from auditflow.model.alert import Alert
from auditflow.parsers.auditd import AuditdParser
from auditflow.parsers.base import Unparsed
from auditflow.parsers.k8s_audit import K8sAuditParser
from auditflow.parsers.syslog import SyslogParser
from auditflow.rules import Detector, Rule, RuleSet
from auditflow.rules.sigma.importer import ImportReport, import_sigma

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
_rule = TypeAdapter[Rule](Rule)

K8S_HEADER = """
title: "{title}"
id: 6f1e2d3c-0000-4000-8000-{serial:012d}
status: test
level: high
logsource: {{product: kubernetes, service: audit}}
"""
AUDITD_HEADER = K8S_HEADER.replace("kubernetes, service: audit", "linux, service: auditd")


def k8s_rule(detection: str, title: str = "test rule", serial: int = 1) -> str:
    return K8S_HEADER.format(title=title, serial=serial) + detection


def auditd_rule(detection: str, title: str = "test rule", serial: int = 1) -> str:
    return AUDITD_HEADER.format(title=title, serial=serial) + detection


def import_texts(tmp_path: Path, *texts: str) -> ImportReport:
    tmp_path.mkdir(parents=True, exist_ok=True)
    for i, text in enumerate(texts):
        (tmp_path / f"rule{i:02d}.yml").write_text(text, encoding="utf-8")
    return import_sigma([tmp_path])


def convert_one(tmp_path: Path, text: str) -> dict[str, Any]:
    report = import_texts(tmp_path, text)
    [outcome] = report.outcomes
    assert outcome.status == "converted", outcome.reason
    assert outcome.converted is not None
    return outcome.converted.rule


def unsupported_reason(tmp_path: Path, text: str) -> str:
    [outcome] = import_texts(tmp_path, text).outcomes
    assert outcome.status == "unsupported", outcome
    return outcome.reason


def ruleset(*rules: dict[str, Any]) -> RuleSet:
    return RuleSet.build([_rule.validate_python(rule) for rule in rules], version="test", source="test")


def k8s_event(seconds: float = 0, user_id: str = "alice", **audit: Any) -> Event:
    return Event(
        event_type="k8s_audit",
        timestamp=T0 + timedelta(seconds=seconds),
        user_id=user_id,
        server_hostname="cluster-1",
        details={"kubernetes": {"audit": audit}, "event": {"original": "{}"}},
    )


def execve_event(*args: str, seconds: float = 0, **audit: Any) -> Event:
    return Event(
        event_type="process_started",
        source_service="auditd",
        timestamp=T0 + timedelta(seconds=seconds),
        server_hostname="web-1",
        details={
            "audit": {
                "records": ["SYSCALL", "EXECVE", "CWD", "PATH"],
                "execve": {f"a{n}": arg for n, arg in enumerate(args)},
                **audit,
            },
            "process": {"args": list(args), "command_line": " ".join(args)},
            "event": {"original": "type=EXECVE ...", "action": "execve", "dataset": "auditd"},
        },
    )


async def fire(state: WindowState, rule: dict[str, Any], events: Sequence[Event]) -> list[Alert]:
    """The alerts the rule raises over the events, one batch, with suppression off."""
    detector = Detector(state, lambda: ruleset({**rule, "suppress_for": 0}))
    return await detector.process(list(events))


async def matches(state: WindowState, rule: dict[str, Any], event: Event) -> bool:
    return bool(await fire(state, rule, [event]))


def parsed(parser: AuditdParser | SyslogParser | K8sAuditParser, *lines: str) -> list[Event]:
    events: list[Event] = []
    for line in lines:
        outcome = parser.feed(line)
        assert not isinstance(outcome, Unparsed), (outcome, line)
        events.extend(outcome)
    events.extend(parser.flush())
    return events


async def fired_on(state: WindowState, rule: dict[str, Any], events: list[Event]) -> list[Event]:
    """The events among `events` that the rule alerted on."""
    ids = {i for alert in await fire(state, rule, events) for i in alert.event_ids}
    return [event for event in events if event.event_id in ids]


# Two Kubernetes audit rules that correlations of the tests reference (by name).
BASE = """title: Secret read
id: 6f1e2d3c-0000-4000-8000-000000000101
name: secret_read
status: test
level: low
logsource: {product: kubernetes, service: audit}
detection:
  selection:
    verb: get
    objectRef.resource: secrets
  condition: selection
---
title: Role binding created
id: 6f1e2d3c-0000-4000-8000-000000000102
name: binding_created
status: test
level: low
logsource: {product: kubernetes, service: audit}
detection:
  selection:
    verb: create
    objectRef.resource: rolebindings
  condition: selection
"""


def correlation(body: str, serial: int = 201) -> str:
    return f"""title: Correlation {serial}
id: 6f1e2d3c-0000-4000-8000-{serial:012d}
status: test
level: high
tags: [attack.credential-access, attack.t1552.007]
correlation:
{body}"""


def read_secret(seconds: float, user: str = "alice", name: str = "db", impersonating: str | None = None) -> Event:
    """A secret read by `user`, optionally impersonating another account."""
    audit: dict[str, Any] = {
        "verb": "get",
        "objectRef": {"resource": "secrets", "name": name},
        "user": {"username": user},
    }
    if impersonating is not None:
        audit["impersonatedUser"] = {"username": impersonating}
    return k8s_event(seconds, **audit)


def create_binding(seconds: float, user: str = "alice") -> Event:
    return k8s_event(seconds, verb="create", objectRef={"resource": "rolebindings"}, user={"username": user})
