"""Each Sigma field modifier, converted and run through the Detector against a matching and a
non-matching event."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from auditflow.backends.state import WindowState
from tests.sigma.helpers import convert_one, k8s_event, k8s_rule, matches, unsupported_reason

FIELDREF = "user.username|fieldref: impersonatedUser.username"  # someone impersonating themselves
BOB: dict[str, Any] = {"user": {"username": "bob"}}
SELF: dict[str, Any] = {**BOB, "impersonatedUser": {"username": "bob"}}

# (detection, audit fields of a matching event, of a non-matching one)
CASES: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "plain value, case-insensitive": ("verb: Delete", {"verb": "delete"}, {"verb": "deleted"}),
    "value list is any of": ("verb: [get, list]", {"verb": "list"}, {"verb": "watch"}),
    "contains": ("requestURI|contains: /exec", {"requestURI": "/api/v1/pods/x/EXEC?c=sh"}, {"requestURI": "/x"}),
    "startswith": ("requestURI|startswith: /apis/", {"requestURI": "/apis/apps"}, {"requestURI": "/api/apis/"}),
    "endswith": ("requestURI|endswith: /secrets", {"requestURI": "/api/v1/secrets"}, {"requestURI": "/secrets/x"}),
    "wildcards": ("requestURI: /api/*/pods/?", {"requestURI": "/api/v1/pods/a"}, {"requestURI": "/api/v1/pods/ab"}),
    "contains|all": (
        "userAgent|contains|all: [kubectl, linux]",
        {"userAgent": "kubectl/v1.31 (linux/amd64)"},
        {"userAgent": "kubectl/v1.31 (darwin/arm64)"},
    ),
    "re": ("requestURI|re: '^/api/v[0-9]+/nodes$'", {"requestURI": "/api/v1/nodes"}, {"requestURI": "/API/v1/nodes"}),
    "re|i": ("requestURI|re|i: '^/api/v1/NODES$'", {"requestURI": "/api/v1/nodes"}, {"requestURI": "/api/v1/pods"}),
    "cased": ("verb|cased: Create", {"verb": "Create"}, {"verb": "create"}),
    "cidr": ("sourceIPs|cidr: 10.20.0.0/16", {"sourceIPs": ["192.0.2.1", "10.20.3.4"]}, {"sourceIPs": ["10.21.0.1"]}),
    "base64": ("requestURI|base64: secret", {"requestURI": "c2VjcmV0"}, {"requestURI": "secret"}),
    "base64offset|contains": (
        "requestURI|base64offset|contains: /bin/sh",
        {"requestURI": "?cmd=ZWNobyAvYmluL3No"},  # "echo /bin/sh"
        {"requestURI": "?cmd=L2Jpbi9iYXNo"},  # "/bin/bash"
    ),
    "windash": ("requestURI|windash|contains: ' -force'", {"requestURI": "x /force"}, {"requestURI": "x force"}),
    "exists true": ("impersonatedUser|exists: true", {"impersonatedUser": {"username": "bob"}}, {"verb": "get"}),
    "exists false": ("impersonatedUser|exists: false", {"verb": "get"}, {"impersonatedUser": {"username": "x"}}),
    "null": ("impersonatedUser: null", {"verb": "get"}, {"impersonatedUser": {"username": "bob"}}),
    "number": ("responseStatus.code: 403", {"responseStatus": {"code": 403}}, {"responseStatus": {"code": 200}}),
    "gt": ("responseStatus.code|gt: 399", {"responseStatus": {"code": 400}}, {"responseStatus": {"code": 399}}),
    "gte": ("responseStatus.code|gte: 400", {"responseStatus": {"code": 400}}, {"responseStatus": {"code": 399}}),
    "lt": ("responseStatus.code|lt: 300", {"responseStatus": {"code": 299}}, {"responseStatus": {"code": 300}}),
    "lte": ("responseStatus.code|lte: 299", {"responseStatus": {"code": 299}}, {"responseStatus": {"code": 300}}),
    "neq": ("responseStatus.code|neq: 200", {"responseStatus": {"code": 201}}, {"responseStatus": {"code": 200}}),
    "fieldref": (FIELDREF, SELF, {**BOB, "impersonatedUser": {"username": "alice"}}),
    "fieldref, the other field missing": (FIELDREF, SELF, BOB),
    "fieldref, this field missing": (FIELDREF, SELF, {"impersonatedUser": {"username": "bob"}}),
    "fieldref is case-sensitive": (FIELDREF, SELF, {**BOB, "impersonatedUser": {"username": "Bob"}}),
    "fieldref|startswith": (
        "objectRef.name|fieldref|startswith: user.username",
        {**BOB, "objectRef": {"name": "bob-debug"}},
        {**BOB, "objectRef": {"name": "debug-bob"}},
    ),
    "fieldref|endswith": (
        "objectRef.name|fieldref|endswith: user.username",
        {**BOB, "objectRef": {"name": "debug-bob"}},
        {**BOB, "objectRef": {"name": "bob-debug"}},
    ),
    "fieldref|contains": (
        "requestURI|fieldref|contains: objectRef.name",
        {"requestURI": "/api/v1/namespaces/x/pods/web-1/exec", "objectRef": {"name": "web-1"}},
        {"requestURI": "/api/v1/namespaces/x/pods/web-1/exec", "objectRef": {"name": "web-2"}},
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
async def test_modifier_matches_and_does_not_match(name: str, tmp_path: Path, state: WindowState) -> None:
    detection, hit, miss = CASES[name]
    text = k8s_rule(f"detection:\n  selection:\n    {detection}\n  condition: selection\n", title=name)
    rule = convert_one(tmp_path, text)
    assert await matches(state, rule, k8s_event(**hit))
    assert not await matches(state, rule, k8s_event(**miss))


def test_fieldref_converts_to_a_field_operator_on_the_mapped_fields(tmp_path: Path) -> None:
    text = k8s_rule(f"detection:\n  selection:\n    {FIELDREF}\n  condition: selection\n")
    where = convert_one(tmp_path, text)["where"]
    audit = "details.kubernetes.audit"
    assert where[f"{audit}.user.username"] == {"equals_field": f"{audit}.impersonatedUser.username"}


async def test_fieldref_matches_on_each_backend(tmp_path: Path, any_state: WindowState) -> None:
    text = k8s_rule(f"detection:\n  selection:\n    {FIELDREF}\n  condition: selection\n")
    rule = convert_one(tmp_path, text)
    assert await matches(any_state, rule, k8s_event(**BOB, impersonatedUser={"username": "bob"}))
    assert not await matches(any_state, rule, k8s_event(**BOB, impersonatedUser={"username": "alice"}))
    assert not await matches(any_state, rule, k8s_event(**BOB))


def test_a_fieldref_to_a_field_the_logsource_does_not_have_is_unsupported(tmp_path: Path) -> None:
    text = k8s_rule("detection:\n  selection:\n    user.username|fieldref: seccompProfile\n  condition: selection\n")
    assert unsupported_reason(tmp_path, text) == "field 'seccompProfile' is not in AuditFlow's Kubernetes audit events"


def test_a_field_the_logsource_does_not_have_is_unsupported(tmp_path: Path) -> None:
    text = k8s_rule("detection:\n  selection:\n    seccompProfile: Unconfined\n  condition: selection\n")
    assert unsupported_reason(tmp_path, text) == "field 'seccompProfile' is not in AuditFlow's Kubernetes audit events"
