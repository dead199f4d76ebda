"""The logsource pipeline against events made by the project's own parsers from the golden samples:
a Sigma rule written the way SigmaHQ writes auditd, sshd and Kubernetes audit rules fires on the
parsed event it describes and not on its neighbours."""

from __future__ import annotations

from pathlib import Path

from auditflow.backends.state import WindowState
from auditflow.model import Event
from auditflow.parsers.auditd import AuditdParser
from auditflow.parsers.base import Unparsed
from auditflow.parsers.k8s_audit import K8sAuditParser
from auditflow.parsers.syslog import SyslogParser
from tests.sigma.helpers import auditd_rule, convert_one, fire, unsupported_reason

GOLDEN = Path(__file__).parent.parent / "parsers" / "golden"


def parse(parser: AuditdParser | K8sAuditParser | SyslogParser, name: str) -> list[Event]:
    events: list[Event] = []
    for line in (GOLDEN / name).read_text(encoding="utf-8").split("\n"):
        result = parser.feed(line)
        if not isinstance(result, Unparsed):
            events.extend(result)
    events.extend(parser.flush())
    return events


async def test_auditd_execve_arguments_by_position(tmp_path: Path, state: WindowState) -> None:
    events = parse(AuditdParser(), "auditd.log")
    curl = [e for e in events if e.details.get("process", {}).get("args", [""])[0] == "curl"]
    assert len(curl) == 1
    rule = convert_one(
        tmp_path,
        auditd_rule(
            "detection:\n  selection:\n    type: EXECVE\n    a0: curl\n    a1|startswith: '-s'\n"
            "    a3|contains: '://'\n  condition: selection\n"
        ),
    )
    alerts = await fire(state, rule, events)
    assert [a.event_ids for a in alerts] == [[curl[0].event_id]]
    shifted = convert_one(
        tmp_path / "x",
        auditd_rule("detection:\n  selection:\n    type: EXECVE\n    a1: curl\n  condition: selection\n", serial=2),
    )
    assert await fire(state, shifted, events) == []


async def test_auditd_syscall_and_watched_path(tmp_path: Path, state: WindowState) -> None:
    events = parse(AuditdParser(), "auditd.log")
    shadow = [e for e in events if e.details.get("file", {}).get("path") == "/etc/shadow"]
    assert shadow
    rule = convert_one(
        tmp_path,
        auditd_rule(
            "detection:\n  selection:\n    type: PATH\n    name: /etc/shadow\n    SYSCALL: openat\n"
            "    key: identity\n  condition: selection\n"
        ),
    )
    alerts = await fire(state, rule, events)
    assert {i for a in alerts for i in a.event_ids} == {e.event_id for e in shadow}


def test_auditd_field_the_parser_does_not_keep_is_unsupported(tmp_path: Path) -> None:
    text = auditd_rule("detection:\n  selection:\n    type: PROCTITLE\n    proctitle: bash\n  condition: selection\n")
    assert unsupported_reason(tmp_path, text) == "field 'proctitle' is not in AuditFlow's auditd events"


async def test_kubernetes_audit_fields_use_the_audit_log_names(tmp_path: Path, state: WindowState) -> None:
    events = parse(K8sAuditParser(), "k8s-audit.log")
    text = """title: Cluster role binding created
id: 6f1e2d3c-0000-4000-8000-00000000bbbb
status: test
level: high
logsource: {category: application, product: kubernetes, service: audit}
detection:
  selection:
    verb: create
    objectRef.resource: clusterrolebindings
    objectRef.apiGroup: rbac.authorization.k8s.io
  condition: selection
"""
    rule = convert_one(tmp_path, text)
    alerts = await fire(state, rule, events)
    bindings = [
        e
        for e in events
        if e.details["kubernetes"]["audit"].get("objectRef", {}).get("resource") == "clusterrolebindings"
        and e.details["kubernetes"]["audit"]["verb"] == "create"
    ]
    assert bindings
    assert {i for a in alerts for i in a.event_ids} == {e.event_id for e in bindings}


async def test_sshd_service_keywords_only_look_at_sshd_lines(tmp_path: Path, state: WindowState) -> None:
    events = parse(SyslogParser(), "sshd.log") + parse(SyslogParser(), "sudo.log")
    text = """title: SSH break-in attempt
id: 6f1e2d3c-0000-4000-8000-00000000cccc
status: test
level: medium
logsource: {product: linux, service: sshd}
detection:
  keywords:
    - 'POSSIBLE BREAK-IN ATTEMPT'
  condition: keywords
"""
    rule = convert_one(tmp_path, text)
    alerts = await fire(state, rule, events)
    expected = {e.event_id for e in events if "possible break-in" in e.details["event"]["original"].lower()}
    assert expected
    assert {i for a in alerts for i in a.event_ids} == expected
