"""The alert detail of the API carries the rule that raised it, as loaded now: references, false
positives, origin and tags, from a YAML rule and from a Sigma file loaded directly; an alert whose
rule was removed has `rule: null`. PATCH answers with the same shape."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from auditflow.app import create_app
from auditflow.config import load_settings
from auditflow.runtime import Runtime
from tests.component.conftest import TOKEN, Embedded

OWN_RULE = """
rules:
  - id: root-login
    name: Root logged in
    kind: match
    severity: WARNING
    where: {event_type: user_login, user_id: root}
    tags: [attack.t1078.003]
    references: [https://attack.mitre.org/techniques/T1078/003/]
    falsepositives: [Break-glass logins by the on-call engineer]
"""
SIGMA_RULE = """
title: Exec into pod
id: 6f1e2d3c-0000-4000-8000-000000000001
status: experimental
level: high
description: A shell was opened in a pod
references: [https://kubernetes.io/docs/tasks/debug/debug-application/get-shell-running-container/]
falsepositives: [Debugging by the platform team]
tags: [attack.execution, attack.t1609]
logsource: {product: kubernetes, service: audit}
detection:
  selection: {verb: create, objectRef.subresource: exec}
  condition: selection
"""


@pytest.fixture
async def embedded(tmp_path: Path) -> AsyncIterator[Embedded]:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "own.yaml").write_text(OWN_RULE, encoding="utf-8")
    (rules / "k8s.sigma.yml").write_text(SIGMA_RULE, encoding="utf-8")
    settings = load_settings(data_dir=tmp_path, generator_rate=0, api_tokens=TOKEN, rules_path=rules)
    runtime = Runtime(settings, "run")
    app = create_app(runtime, [TOKEN], manage_lifecycle=False)
    await runtime.start()
    await runtime.wait_ready()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t", headers=headers) as c:
        yield Embedded(runtime, c)
    await runtime.aclose()


def _now() -> str:
    return datetime.now(UTC).isoformat()


async def _detail(embedded: Embedded, rule_id: str, event: dict[str, Any]) -> dict[str, Any]:
    assert (await embedded.post_events(event)).status_code == 202
    [alert] = await embedded.alerts(rule_id=rule_id)
    response = await embedded.client.get(f"/api/v1/alerts/{alert['alert_id']}")
    assert response.status_code == 200, response.text
    detail: dict[str, Any] = response.json()
    return detail


async def test_alert_detail_carries_the_yaml_rule_and_loses_it_when_removed(embedded: Embedded, tmp_path: Path) -> None:
    login = {"event_type": "user_login", "user_id": "root", "server_hostname": "web-1", "timestamp": _now()}
    detail = await _detail(embedded, "root-login", login)
    rule = detail["rule"]
    assert rule["id"] == "root-login"
    assert rule["name"] == "Root logged in"
    assert rule["references"] == ["https://attack.mitre.org/techniques/T1078/003/"]
    assert rule["falsepositives"] == ["Break-glass logins by the on-call engineer"]
    assert rule["origin"] is None
    assert rule["tags"] == ["attack.t1078.003"]
    assert rule["source"] == str(tmp_path / "rules" / "own.yaml")

    patched = await embedded.client.patch(f"/api/v1/alerts/{detail['alert_id']}", json={"note": "looking"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["rule"]["references"] == rule["references"]

    (tmp_path / "rules" / "own.yaml").write_text("rules: []\n", encoding="utf-8")
    assert embedded.runtime.rules is not None
    assert await embedded.runtime.rules.reload_now()
    again = (await embedded.client.get(f"/api/v1/alerts/{detail['alert_id']}")).json()
    assert again["rule"] is None
    assert again["rule_name"] == "Root logged in"  # the alert itself is unchanged


async def test_alert_detail_carries_the_sigma_metadata(embedded: Embedded) -> None:
    audit = {"verb": "create", "objectRef": {"resource": "pods", "subresource": "exec"}}
    event = {
        "event_type": "k8s_audit",
        "server_hostname": "cluster-1",
        "timestamp": _now(),
        "source_service": "kube-apiserver",
        "details": {"kubernetes": {"audit": audit}},
    }
    detail = await _detail(embedded, "sigma-6f1e2d3c-0000-4000-8000-000000000001", event)
    rule = detail["rule"]
    assert rule["origin"] == {
        "kind": "sigma",
        "id": "6f1e2d3c-0000-4000-8000-000000000001",
        "title": "Exec into pod",
        "level": "high",
        "status": "experimental",
        "file": "k8s.sigma.yml",
    }
    assert rule["references"] == [
        "https://kubernetes.io/docs/tasks/debug/debug-application/get-shell-running-container/"
    ]
    assert rule["falsepositives"] == ["Debugging by the platform team"]
    assert {"attack.execution", "attack.t1609", "sigma.level.high"} <= set(rule["tags"])
    assert detail["tags"] == rule["tags"]
