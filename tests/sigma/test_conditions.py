"""Sigma condition forms (and, or, not, parentheses, `1 of`, `all of`, wildcards, `them`) and
keyword searches, converted and run through the Detector."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditflow.backends.state import WindowState
from auditflow.model import Event
from auditflow.rules.requirements import Substrings, requirements
from tests.sigma.helpers import convert_one, k8s_event, k8s_rule, matches

SELECTIONS = """detection:
  sel_secret:
    objectRef.resource: secrets
  sel_read:
    verb: [get, list]
  sel_write:
    verb: [create, update]
  filter_system:
    user.username|startswith: 'system:'
"""


def secret(verb: str, user: str = "alice") -> Event:
    return k8s_event(verb=verb, objectRef={"resource": "secrets"}, user={"username": user})


def pod(verb: str) -> Event:
    return k8s_event(verb=verb, objectRef={"resource": "pods"}, user={"username": "alice"})


# condition -> (events it fires on, events it does not)
CONDITIONS = {
    "sel_secret and sel_read": ([secret("get")], [secret("delete"), pod("get")]),
    "sel_secret or sel_read": ([secret("delete"), pod("list")], [pod("delete")]),
    "sel_secret and not filter_system": ([secret("get")], [secret("get", "system:kube-controller"), pod("get")]),
    "sel_secret and (sel_read or sel_write)": ([secret("list"), secret("create")], [secret("delete"), pod("get")]),
    "not (sel_read or sel_write)": ([secret("delete")], [secret("get"), pod("update")]),
    "sel_secret and 1 of sel_r* ": ([secret("get")], [secret("create")]),
    "all of sel_* ": ([], [secret("get"), secret("create")]),  # read and write at once: never
    # `sel_*` includes sel_secret itself, so any verb on secrets passes the `1 of`
    "sel_secret and 1 of sel_* and not 1 of filter_*": (
        [secret("create"), secret("delete")],
        [pod("get"), secret("get", "system:node:n1")],
    ),
    "1 of them": ([pod("get"), secret("delete")], [pod("delete")]),
    "all of sel_s* and all of sel_re*": ([secret("list")], [secret("update")]),
}


@pytest.mark.parametrize("condition", sorted(CONDITIONS))
async def test_condition_form(condition: str, tmp_path: Path, state: WindowState) -> None:
    rule = convert_one(tmp_path, k8s_rule(f"{SELECTIONS}  condition: {condition}\n"))
    hits, misses = CONDITIONS[condition]
    for event in hits:
        assert await matches(state, rule, event), (condition, event.details)
    for event in misses:
        assert not await matches(state, rule, event), (condition, event.details)


async def test_a_selection_list_of_maps_is_any_of_them(tmp_path: Path, state: WindowState) -> None:
    detection = """detection:
  selection:
    - {verb: delete, objectRef.resource: secrets}
    - {verb: create, objectRef.subresource: exec}
  condition: selection
"""
    rule = convert_one(tmp_path, k8s_rule(detection))
    assert await matches(state, rule, secret("delete"))
    assert await matches(state, rule, k8s_event(verb="create", objectRef={"resource": "pods", "subresource": "exec"}))
    assert not await matches(state, rule, k8s_event(verb="create", objectRef={"resource": "pods"}))


def linux_event(original: str, event_type: str = "user_login") -> Event:
    return Event(
        event_type=event_type,
        timestamp=k8s_event().timestamp,
        server_hostname="web-1",
        details={"event": {"original": original, "dataset": "sshd"}},
    )


async def test_keywords_search_the_raw_line_case_insensitively(tmp_path: Path, state: WindowState) -> None:
    text = """title: keywords
id: 6f1e2d3c-0000-4000-8000-00000000aaaa
status: test
level: medium
logsource: {product: linux}
detection:
  keywords:
    - 'rm -rf /var/log/*'
    - 'history -c'
  condition: keywords
"""
    rule = convert_one(tmp_path, text)
    assert await matches(state, rule, linux_event("Dec  2 host bash[1]: alice: HISTORY -C"))
    assert await matches(state, rule, linux_event("bash: rm -rf /var/log/syslog.1 now"))
    assert not await matches(state, rule, linux_event("bash: rm -rf /tmp/x"))
    # a Kubernetes audit event is not a Linux log line
    assert not await matches(state, rule, k8s_event(verb="history -c"))


async def test_substrings_become_substring_tests_that_the_detector_can_gate(tmp_path: Path, state: WindowState) -> None:
    text = """title: shell commands
id: 6f1e2d3c-0000-4000-8000-00000000bbbb
status: test
level: medium
logsource: {product: linux}
detection:
  keywords:
    - 'socat exec:'
    - 'wget *; chmod +x'
  condition: keywords
"""
    rule = convert_one(tmp_path.joinpath("a"), text)
    spec = rule["where"]["details.event.original"]
    # one wildcard-free keyword is a plain substring test; the other keeps its regex behind its
    # longest literal part, so the rule has needles for every keyword
    assert spec == {
        "any": [
            {"contains": "socat exec:", "ignore_case": True},
            {"contains": "; chmod +x", "ignore_case": True, "regex": "(?is:wget .*; chmod \\+x)"},
        ]
    }
    needles = Substrings("details.event.original", frozenset({"socat exec:", "; chmod +x"}), exact=True)
    assert needles in requirements(rule["where"])
    assert await matches(state, rule, linux_event("bash: SOCAT EXEC:/bin/sh tcp:1.2.3.4"))
    assert await matches(state, rule, linux_event("bash: wget http://x/a; CHMOD +x a"))
    assert not await matches(state, rule, linux_event("bash: curl x; chmod +x a"))
    field = convert_one(
        tmp_path.joinpath("b"), k8s_rule("detection:\n  s: {requestURI|contains|cased: /Exec}\n  condition: s\n")
    )
    assert field["where"]["details.kubernetes.audit.requestURI"] == {"contains": "/Exec"}
