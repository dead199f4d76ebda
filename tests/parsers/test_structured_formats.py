"""Kubernetes audit and journald specifics the golden files do not show, and the registry's
detection of the structured formats."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import pytest

from auditflow.model.event import MAX_DETAILS_BYTES, Event
from auditflow.parsers.base import SourceContext, Unparsed
from auditflow.parsers.journald import JournaldParser
from auditflow.parsers.k8s_audit import K8sAuditParser
from auditflow.parsers.registry import create_parser, detect_format

K8S = {
    "kind": "Event",
    "apiVersion": "audit.k8s.io/v1",
    "auditID": "1",
    "stage": "ResponseComplete",
    "verb": "get",
    "user": {"username": "bob"},
    "stageTimestamp": "2024-12-02T15:12:03.775122Z",
}


def events_of(outcome: Sequence[Event] | Unparsed) -> Sequence[Event]:
    assert not isinstance(outcome, Unparsed), outcome
    return outcome


def _k8s(**fields: object) -> str:
    return orjson.dumps({**K8S, **fields}).decode()


@pytest.mark.parametrize("stage", ["RequestReceived", "ResponseStarted"])
def test_k8s_early_stages_are_understood_without_an_event(stage: str) -> None:
    assert K8sAuditParser().feed(_k8s(stage=stage)) == []


def test_k8s_panic_without_a_status_is_a_failure_and_no_status_is_unknown() -> None:
    (panic,) = events_of(K8sAuditParser().feed(_k8s(stage="Panic")))
    assert panic.action_result == "FAILURE"
    (plain,) = events_of(K8sAuditParser(SourceContext(host="prod-cluster")).feed(_k8s()))
    assert plain.action_result is None
    assert plain.details["event"]["outcome"] == "unknown"
    assert plain.server_hostname == "prod-cluster"


def test_k8s_reasons_for_lines_that_are_not_audit_events() -> None:
    parser = K8sAuditParser()
    assert parser.feed("{") == Unparsed("k8s-audit-not-json")
    assert parser.feed(_k8s(apiVersion="v1")) == Unparsed("k8s-audit-unknown-api-version")
    assert parser.feed(_k8s(stage="Later")) == Unparsed("k8s-audit-unknown-stage")
    assert parser.feed(_k8s(stageTimestamp="yesterday")) == Unparsed("k8s-audit-bad-timestamp")


def test_k8s_a_huge_request_object_is_cut_to_the_details_limit() -> None:
    line = _k8s(requestObject={"data": {"blob": "x" * (2 * MAX_DETAILS_BYTES)}})
    (event,) = events_of(K8sAuditParser().feed(line))
    assert len(orjson.dumps(event.details)) <= MAX_DETAILS_BYTES
    assert event.details["event"]["truncated"] is True
    assert event.details["event"]["original_length"] == len(line)
    assert event.user_id == "bob"


JOURNAL = {
    "__REALTIME_TIMESTAMP": "1733150853273456",
    "_HOSTNAME": "web01",
    "_TRANSPORT": "syslog",
    "SYSLOG_IDENTIFIER": ["sshd", "sshd"],
    "_PID": "2201",
}


def test_journald_message_as_bytes_and_repeated_fields() -> None:
    message = list(b"Failed password for root from 192.0.2.1 port 22 ssh2")
    (event,) = events_of(JournaldParser().feed(orjson.dumps({**JOURNAL, "MESSAGE": message}).decode(), key="j:1"))
    assert (event.event_type, event.user_id, event.action_result) == ("user_login", "root", "FAILURE")
    assert event.details["process"]["pid"] == 2201
    assert event.timestamp.isoformat() == "2024-12-02T14:47:33.273000+00:00"


def test_journald_reasons() -> None:
    parser = JournaldParser()
    assert parser.feed(orjson.dumps({**JOURNAL, "MESSAGE": [1, 300]}).decode()) == Unparsed("journald-no-message")
    assert parser.feed(orjson.dumps({**JOURNAL, "MESSAGE": "x", "__REALTIME_TIMESTAMP": "²"}).decode()) == Unparsed(
        "journald-bad-timestamp"
    )
    audit = {**JOURNAL, "_TRANSPORT": "audit", "MESSAGE": "SYSCALL arch=c000003e"}
    assert parser.feed(orjson.dumps(audit).decode()) == Unparsed("journald-audit-incomplete")


@pytest.mark.parametrize(
    ("line", "fmt"),
    [
        ("type=EOE msg=audit(1733151042.309:4631): ", "auditd"),
        ("node=db01 type=SYSCALL msg=audit(1733151042.309:4631): arch=c000003e", "auditd"),
        (orjson.dumps({**JOURNAL, "MESSAGE": "hello"}).decode(), "journald"),
        (_k8s(), "k8s-audit"),
    ],
)
def test_detection_names_the_structured_formats(line: str, fmt: str) -> None:
    assert detect_format([line, line]) == fmt
    assert create_parser(fmt, SourceContext()).name == fmt
