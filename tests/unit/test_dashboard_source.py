"""Alert sources: the HTTP one against a mock notification API, the local one over a store."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from uuid import UUID, uuid4

import httpx
import orjson
import pytest

from auditflow.backends.store.base import AlertStore, UpsertResult
from auditflow.backends.store.dead_letters import StoredDeadLetter
from auditflow.errors import BackendError, BackendUnavailable, NotFound
from auditflow.model.alert import Alert, AlertDetail, AlertPage, AlertQuery, AlertStats, AlertStatus, AlertUpdate
from auditflow.model.dead_letter import DeadLetterPage
from auditflow.model.event import Severity
from auditflow.model.status import DependencyStatus, Readiness, RuleInfo, RulesStatus
from auditflow.security import ACTOR_HEADER, ApiToken
from auditflow.services.dashboard.source import HttpAlertSource, LocalAlertSource
from tests.factories import alert_detail, make_alert

BASE = "http://notification:8082"
TOKEN = "t" * 32
DETAIL = alert_detail(make_alert())
RULE = RuleInfo(
    id=DETAIL.rule_id,
    name=DETAIL.rule_name,
    description="",
    kind="threshold",
    severity=Severity.WARNING,
    tags=["attack.t1110"],
    enabled=True,
    suppress_for_seconds=300,
    references=["https://attack.mitre.org/techniques/T1110/"],
    falsepositives=["A user who forgot a changed password"],
)
STATS = AlertStats(
    total=0, by_severity={}, by_status={}, by_rule=[], top_users=[], top_hosts=[], buckets=[], bucket_seconds=60
)
READY = Readiness(
    status="not_ready",
    service="notification",
    dependencies=[DependencyStatus(name="store", status="down", critical=True, last_error="refused")],
)


def json_response(model: object, status: int = 200) -> httpx.Response:
    assert hasattr(model, "model_dump_json")
    return httpx.Response(status, content=model.model_dump_json(), headers={"Content-Type": "application/json"})


class Api:
    """A mock notification API that records every request."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path == "/api/v1/alerts":
            return json_response(AlertPage(items=[], next_cursor="next"))
        if path == "/api/v1/alerts/stats":
            return json_response(STATS)
        if path == "/api/v1/rules":
            return json_response(RulesStatus(rules=[], version="v1"))
        if path == f"/api/v1/alerts/{DETAIL.alert_id}":
            return json_response(DETAIL)
        if path == "/api/v1/dead-letters":
            return json_response(DeadLetterPage(items=[], total=7, next_cursor=None))
        if path == "/readyz":
            return json_response(READY, status=503)
        if path == "/api/v1/alerts/" + "0" * 8 + "-0000-0000-0000-" + "0" * 12:
            return httpx.Response(403, json={"detail": "token 'dashboard' lacks the 'read' scope"})
        return httpx.Response(404, json={"detail": "not found"})


def http_source(
    handler: Callable[[httpx.Request], httpx.Response], readiness_urls: Sequence[str] = ()
) -> HttpAlertSource:
    return HttpAlertSource(BASE, TOKEN, transport=httpx.MockTransport(handler), readiness_urls=readiness_urls)


async def test_list_sends_every_filter_and_the_token() -> None:
    api = Api()
    source = http_source(api)
    query = AlertQuery(
        severity=[Severity.CRITICAL, Severity.ERROR],
        status=[AlertStatus.OPEN],
        rule_id="r1",
        user_id="ana",
        server_hostname="web-1",
        since=datetime(2026, 3, 1, 10, tzinfo=UTC),
        text="root",
        limit=20,
        cursor="c1",
    )
    page = await source.list_alerts(query)
    await source.aclose()
    assert page.next_cursor == "next"
    request = api.requests[0]
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    params = request.url.params
    assert params.get_list("severity") == ["CRITICAL", "ERROR"]
    assert params.get_list("status") == ["open"]
    assert params["since"] == "2026-03-01T10:00:00.000Z"
    assert "until" not in params
    assert (params["q"], params["limit"], params["cursor"], params["rule_id"]) == ("root", "20", "c1", "r1")
    assert (params["user_id"], params["server_hostname"]) == ("ana", "web-1")


async def test_update_sends_json_and_the_dashboard_user_as_actor() -> None:
    api = Api()
    source = http_source(api)
    detail = await source.update_alert(DETAIL.alert_id, AlertUpdate(status=AlertStatus.RESOLVED), "ana")
    assert detail.alert_id == DETAIL.alert_id
    request = api.requests[0]
    assert request.method == "PATCH"
    assert request.headers[ACTOR_HEADER] == "ana"
    assert orjson.loads(request.content) == {"status": "resolved"}


async def test_stats_rules_and_detail_are_parsed() -> None:
    api = Api()
    source = http_source(api)
    until = datetime(2026, 3, 2, tzinfo=UTC)
    assert (await source.stats(None, until, 3600)).bucket_seconds == 60
    assert api.requests[0].url.params["until"] == "2026-03-02T00:00:00.000Z"
    assert api.requests[0].url.params["bucket_seconds"] == "3600"
    assert (await source.rules()).version == "v1"
    assert (await source.get_alert(DETAIL.alert_id)).rule_id == DETAIL.rule_id
    assert (await source.dead_letters(25, "c2")).total == 7
    assert dict(api.requests[-1].url.params) == {"limit": "25", "cursor": "c2"}


async def test_the_rule_of_an_alert_detail_comes_from_the_api() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return json_response(DETAIL.with_rule(RULE))

    detail = await http_source(handler).get_alert(DETAIL.alert_id)
    assert detail.rule == RULE


async def test_the_local_source_looks_the_rule_up_by_id() -> None:
    async def readiness() -> Readiness:
        return READY

    other = RULE.model_copy(update={"id": "other"})
    by_list = LocalAlertSource(StubStore(), lambda: RulesStatus(rules=[other, RULE]), readiness)
    assert (await by_list.get_alert(DETAIL.alert_id)).rule == RULE
    by_lookup = LocalAlertSource(StubStore(), lambda: RulesStatus(rules=[]), readiness, rule_info={RULE.id: RULE}.get)
    assert (await by_lookup.get_alert(DETAIL.alert_id)).rule == RULE
    assert (await by_lookup.update_alert(DETAIL.alert_id, AlertUpdate(note="n"), "ana")).rule == RULE
    unknown = LocalAlertSource(StubStore(), lambda: RulesStatus(rules=[other]), readiness)
    assert (await unknown.get_alert(DETAIL.alert_id)).rule is None


async def test_errors_map_into_the_project_exceptions() -> None:
    source = http_source(Api())
    with pytest.raises(NotFound):
        await source.get_alert(uuid4())
    with pytest.raises(
        BackendError, match=r"refused the dashboard's token \(403\): token 'dashboard' lacks the 'read'"
    ):
        await source.get_alert(UUID(int=0))

    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(BackendUnavailable):
        await http_source(broken).list_alerts(AlertQuery())
    with pytest.raises(BackendUnavailable):
        await http_source(lambda r: httpx.Response(502)).rules()
    with pytest.raises(BackendError, match="unexpected answer"):
        await http_source(lambda r: httpx.Response(200, json={"no": "page"})).list_alerts(AlertQuery())


async def test_readiness_reads_503_bodies_and_merges_other_services() -> None:
    api = Api()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "analysis":
            raise httpx.ConnectError("refused", request=request)
        return api(request)

    alone = await http_source(api).readiness()
    assert alone == READY
    merged = await http_source(handler, readiness_urls=[f"{BASE}/readyz", "http://analysis:8081/readyz"]).readiness()
    assert merged.status == "not_ready"
    names = [dep.name for dep in merged.dependencies]
    assert names == ["notification: store", "analysis:8081: service"]
    assert merged.dependencies[1].last_error == "unreachable"
    assert "authorization" not in api.requests[-1].headers


class StubStore(AlertStore):
    """Only what LocalAlertSource calls; each call is recorded."""

    def __init__(self) -> None:
        super().__init__("stub://")
        self.calls: list[str] = []

    async def start(self) -> None: ...
    async def aclose(self) -> None: ...
    async def migrate(self) -> None: ...
    async def ping(self) -> None: ...
    async def check_schema(self) -> None: ...

    async def upsert_alerts(self, alerts: Sequence[Alert]) -> UpsertResult:
        return UpsertResult(0, 0)

    async def list_alerts(self, query: AlertQuery) -> AlertPage:
        self.calls.append("list")
        return AlertPage(items=[], next_cursor=None)

    async def get_alert(self, alert_id: UUID) -> AlertDetail:
        self.calls.append("get")
        return DETAIL

    async def update_alert(self, alert_id: UUID, update: AlertUpdate, actor: str) -> AlertDetail:
        self.calls.append(f"update:{actor}")
        return DETAIL

    async def stats(self, since: datetime | None, until: datetime | None, bucket_seconds: int) -> AlertStats:
        self.calls.append(f"stats:{bucket_seconds}")
        return STATS

    async def count(self) -> int:
        return 0

    async def add_dead_letters(self, letters: Sequence[StoredDeadLetter]) -> int:
        return 0

    async def list_dead_letters(self, limit: int, cursor: str | None = None) -> DeadLetterPage:
        self.calls.append(f"dead-letters:{limit}:{cursor}")
        return DeadLetterPage(items=[], total=0, next_cursor=None)

    async def take_dead_letters(
        self, ids: Sequence[UUID] | None, limit: int, *, received_until_ms: int | None = None
    ) -> list[StoredDeadLetter]:
        return []

    async def delete_dead_letters(self, ids: Sequence[UUID] | None) -> int:
        return 0

    async def count_dead_letters(self) -> int:
        return 0


async def test_local_source_reads_the_store_rules_and_readiness() -> None:
    store = StubStore()

    async def readiness() -> Readiness:
        return READY

    source = LocalAlertSource(store, lambda: RulesStatus(rules=[], version="local"), readiness)
    await source.list_alerts(AlertQuery())
    await source.get_alert(DETAIL.alert_id)
    await source.update_alert(DETAIL.alert_id, AlertUpdate(note="n"), "ana")
    await source.stats(None, None, 60)
    await source.dead_letters(25, "c1")
    assert store.calls == ["list", "get", "update:ana", "stats:60", "dead-letters:25:c1"]
    assert (await source.rules()).version == "local"
    assert await source.readiness() == READY
    await source.aclose()


async def test_local_source_records_the_user_via_the_dashboards_token() -> None:
    store = StubStore()

    async def readiness() -> Readiness:
        return READY

    token = ApiToken.operator("generated-token-0123456789")
    source = LocalAlertSource(store, lambda: RulesStatus(rules=[], version="local"), readiness, acting_through=token)
    await source.update_alert(DETAIL.alert_id, AlertUpdate(note="n"), "ana")
    # The same "user via token" the API writes for a delegated change in distributed mode.
    assert store.calls == ["update:ana via token#1"]
