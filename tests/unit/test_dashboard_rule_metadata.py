"""Rule metadata on the dashboard: the alert page shows the rule's references, false positives and
origin (looked up in the active rules by rule_id), the rules page lists them, ATT&CK tags link to
attack.mitre.org, and everything that came from a rule file is escaped."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from auditflow.backends.store.sql import SqlAlertStore
from auditflow.config import Settings
from auditflow.model.alert import Alert
from auditflow.model.event import Severity
from auditflow.model.rule_metadata import RuleOrigin
from auditflow.model.status import RuleInfo, RulesStatus
from auditflow.services.dashboard import LocalAlertSource, build_dashboard
from auditflow.services.dashboard.views import attack_url, link_url
from tests.factories import make_alert
from tests.unit.dashboard_support import ENTRIES, READINESS, XSS_DETAIL, sign_in

SIGMA_ID = "6f1e2d3c-0000-4000-8000-000000000001"
SIGMA_RULE = RuleInfo(
    id=f"sigma-{SIGMA_ID}",
    name="Exec into pod",
    description="Someone opened a shell in a pod",
    kind="match",
    severity=Severity.ERROR,
    tags=["sigma", "attack.execution", "attack.t1609", "attack.t1110.001", "sigma.level.high"],
    enabled=True,
    suppress_for_seconds=300,
    references=["https://example.invalid/exec?a=1&b=2", "javascript:alert(1)"],
    falsepositives=["Debugging by the platform team", XSS_DETAIL],
    origin=RuleOrigin(kind="sigma", id=SIGMA_ID, title="Exec into pod", level="high", status="test", file="exec.yml"),
)
PLAIN_RULE = RuleInfo(
    id="root-login",
    name="Root logged in",
    description="",
    kind="match",
    severity=Severity.WARNING,
    tags=["auth"],
    enabled=True,
    suppress_for_seconds=300,
)
RULES = RulesStatus(rules=[SIGMA_RULE, PLAIN_RULE], version="v1")


@pytest.fixture
async def alerts(alert_store: SqlAlertStore) -> dict[str, Alert]:
    made = {
        "sigma": make_alert(rule_id=SIGMA_RULE.id, rule_name=SIGMA_RULE.name, tags=SIGMA_RULE.tags),
        "gone": make_alert(rule_id="removed-rule", rule_name="Removed rule", tags=["attack.t1078"]),
        "retagged": make_alert(rule_id=PLAIN_RULE.id, rule_name=PLAIN_RULE.name, tags=["auth", "legacy"]),
    }
    await alert_store.upsert_alerts(list(made.values()))
    return made


@pytest.fixture
async def client(
    tmp_path: Path, alert_store: SqlAlertStore, alerts: dict[str, Alert]
) -> AsyncIterator[httpx.AsyncClient]:
    async def readiness() -> object:
        return READINESS

    source = LocalAlertSource(alert_store, lambda: RULES, readiness)  # type: ignore[arg-type]
    settings = Settings(data_dir=tmp_path, dashboard_users=[SecretStr(e) for e in ENTRIES])
    app: FastAPI = build_dashboard(settings, source, poll_interval=0.01, stream_lifetime=0.05)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as http:
        await sign_in(http)
        yield http
    await app.state.dashboard.aclose()


@pytest.mark.parametrize(
    ("tag", "url"),
    [
        ("attack.t1110", "https://attack.mitre.org/techniques/T1110/"),
        ("attack.T1110.001", "https://attack.mitre.org/techniques/T1110/001/"),
        ("attack.g0007", "https://attack.mitre.org/groups/G0007/"),
        ("attack.s0002", "https://attack.mitre.org/software/S0002/"),
        ("attack.g0007.001", None),
        ("attack.execution", None),
        ("attack.t1110x", None),
        ("sigma.level.high", None),
        ('attack.t1110"><script>', None),
    ],
)
def test_attack_tags_map_to_their_pages(tag: str, url: str | None) -> None:
    assert attack_url(tag) == url


@pytest.mark.parametrize(
    ("value", "linked"),
    [
        ("https://example.invalid/a", True),
        ("HTTP://example.invalid", True),
        ("javascript:alert(1)", False),
        ("data:text/html,<script>", False),
        ("//example.invalid/a", False),
        ("https:///nohost", False),
        ("https://example.invalid/a b", False),
    ],
)
def test_only_http_urls_become_links(value: str, linked: bool) -> None:
    assert (link_url(value) is not None) is linked


async def test_alert_page_shows_the_rule_metadata(client: httpx.AsyncClient, alerts: dict[str, Alert]) -> None:
    page = (await client.get(f"/alerts/{alerts['sigma'].alert_id}")).text
    rule = page.split('id="rule"', 1)[1].split("</section>", 1)[0]
    assert '<a href="https://example.invalid/exec?a=1&amp;b=2" rel="noopener noreferrer" target="_blank"' in rule
    # A reference that is no http(s) URL (from a remote API, say) is text, never a link.
    assert "javascript:alert(1)" in rule
    assert 'href="javascript:' not in page
    assert "<li>Debugging by the platform team</li>" in rule
    assert XSS_DETAIL not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rule
    assert SIGMA_ID in rule
    assert "level <strong>high</strong>" in rule
    assert "exec.yml" in rule
    assert re.search(
        r'<a class="tag tag-link" href="https://attack.mitre.org/techniques/T1609/" rel="noopener noreferrer"', page
    )
    assert 'href="https://attack.mitre.org/techniques/T1110/001/"' in page
    assert '<span class="tag">attack.execution</span>' in page
    assert "Rule tags now" not in page  # the alert's tags are the rule's: shown once


async def test_rule_tags_changed_since_the_alert_are_shown_too(
    client: httpx.AsyncClient, alerts: dict[str, Alert]
) -> None:
    page = (await client.get(f"/alerts/{alerts['retagged'].alert_id}")).text
    rule = page.split('id="rule"', 1)[1].split("</section>", 1)[0]
    assert "<dt>Rule tags now</dt>" in rule
    assert '<span class="tag">legacy</span>' not in rule


async def test_alert_of_a_removed_rule_says_so(client: httpx.AsyncClient, alerts: dict[str, Alert]) -> None:
    page = (await client.get(f"/alerts/{alerts['gone'].alert_id}")).text
    assert "No loaded rule has the id <code>removed-rule</code> any more" in page
    # The alert's own tags still link: they were stored with the alert.
    assert 'href="https://attack.mitre.org/techniques/T1078/"' in page


async def test_rules_page_lists_origin_references_and_false_positives(client: httpx.AsyncClient) -> None:
    page = (await client.get("/rules")).text
    row = page.split(f'id="rule-{SIGMA_RULE.id}"', 1)[1].split("</tr>", 1)[0]
    assert "Sigma level high · 2 references · 2 false positives" in row
    assert 'href="https://example.invalid/exec?a=1&amp;b=2"' in row
    assert "&lt;script&gt;" in row
    assert 'href="https://attack.mitre.org/techniques/T1609/"' in row
    plain = page.split(f'id="rule-{PLAIN_RULE.id}"', 1)[1].split("</tr>", 1)[0]
    assert "rule-meta" not in plain
