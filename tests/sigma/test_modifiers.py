"""Each Sigma field modifier, converted and run through the Detector against a matching and a
non-matching event."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from auditflow.backends.state import WindowState
from tests.sigma.helpers import convert_one, k8s_event, k8s_rule, matches, unsupported_reason

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
}


@pytest.mark.parametrize("name", sorted(CASES))
async def test_modifier_matches_and_does_not_match(name: str, tmp_path: Path, state: WindowState) -> None:
    detection, hit, miss = CASES[name]
    text = k8s_rule(f"detection:\n  selection:\n    {detection}\n  condition: selection\n", title=name)
    rule = convert_one(tmp_path, text)
    assert await matches(state, rule, k8s_event(**hit))
    assert not await matches(state, rule, k8s_event(**miss))


def test_fieldref_is_reported_unsupported_with_its_reason(tmp_path: Path) -> None:
    detection = "detection:\n  selection:\n    user.username|fieldref: impersonatedUser.username\n"
    text = k8s_rule(detection + "  condition: selection\n")
    assert "fieldref" in unsupported_reason(tmp_path, text)


def test_a_field_the_logsource_does_not_have_is_unsupported(tmp_path: Path) -> None:
    text = k8s_rule("detection:\n  selection:\n    seccompProfile: Unconfined\n  condition: selection\n")
    assert unsupported_reason(tmp_path, text) == "field 'seccompProfile' is not in AuditFlow's Kubernetes audit events"
