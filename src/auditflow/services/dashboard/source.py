"""Where the dashboard reads alerts from: one interface, served by the store itself in embedded mode
and by the notification API over HTTP in distributed mode."""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit
from uuid import UUID

import httpx
from pydantic import BaseModel, RootModel, ValidationError

from auditflow.backends.store.base import AlertStore
from auditflow.errors import BackendError, BackendUnavailable, NotFound
from auditflow.model.alert import AlertDetail, AlertPage, AlertQuery, AlertStats, AlertUpdate
from auditflow.model.dead_letter import DeadLetterPage
from auditflow.model.status import DependencyStatus, Readiness, RuleInfo, RulesStatus
from auditflow.model.timeutil import format_utc, utcnow
from auditflow.notify.health import NOT_CONFIGURED, ChannelDesk, ChannelList
from auditflow.notify.models import DeliveryView
from auditflow.notify.testsend import ChannelTestResult, ChannelTestThrottled
from auditflow.security import ACTOR_HEADER, ApiToken, acting_name

_M = TypeVar("_M", bound=BaseModel)


class DeliveryList(RootModel[list[DeliveryView]]):
    pass


class AlertSource(abc.ABC):
    """Everything the dashboard reads and the one thing it changes (an alert's status and notes)."""

    @abc.abstractmethod
    async def list_alerts(self, query: AlertQuery) -> AlertPage:
        """Raises ValueError for a cursor that no earlier page returned."""

    @abc.abstractmethod
    async def get_alert(self, alert_id: UUID) -> AlertDetail:
        """Raises NotFound."""

    @abc.abstractmethod
    async def update_alert(self, alert_id: UUID, update: AlertUpdate, actor: str) -> AlertDetail:
        """Change an alert on behalf of the signed-in user `actor`. Raises NotFound."""

    @abc.abstractmethod
    async def stats(self, since: datetime | None, until: datetime | None, bucket_seconds: int) -> AlertStats: ...

    @abc.abstractmethod
    async def rules(self) -> RulesStatus: ...

    @abc.abstractmethod
    async def readiness(self) -> Readiness: ...

    @abc.abstractmethod
    async def dead_letters(self, limit: int, cursor: str | None) -> DeadLetterPage:
        """Newest first; `cursor` is the `next_cursor` of the previous page."""

    @abc.abstractmethod
    async def deliveries(self, alert_id: UUID) -> list[DeliveryView]:
        """The notification deliveries of one alert, oldest first. Raises NotFound."""

    @abc.abstractmethod
    async def channels(self) -> ChannelList:
        """The notification channels with their health (an empty list when notifications are off)."""

    @abc.abstractmethod
    async def test_channel(self, name: str, actor: str) -> ChannelTestResult:
        """Send a test notification through channel `name` on behalf of the signed-in user `actor`.
        Raises NotFound, or ChannelTestThrottled when the channel was tested moments ago."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most sources own no connection
        """Release connections the source opened itself."""


class LocalAlertSource(AlertSource):
    """Embedded mode: the store, the rule engine and the readiness checks of this very process.

    With `acting_through` (the process's dashboard token), a change is recorded as the API records a
    delegated one, "user via token"; without it, as the bare user name."""

    def __init__(
        self,
        store: AlertStore,
        rules: Callable[[], RulesStatus],
        readiness: Callable[[], Awaitable[Readiness]],
        *,
        acting_through: ApiToken | None = None,
        channels: ChannelDesk | None = None,
        rule_info: Callable[[str], RuleInfo | None] | None = None,
    ) -> None:
        self._store = store
        self._rules = rules
        self._rule_info = rule_info or self._find_rule
        self._readiness = readiness
        self._token = acting_through
        self._channels = channels

    async def list_alerts(self, query: AlertQuery) -> AlertPage:
        return await self._store.list_alerts(query)

    async def get_alert(self, alert_id: UUID) -> AlertDetail:
        detail = await self._store.get_alert(alert_id)
        return detail.with_rule(self._rule_info(detail.rule_id))

    async def update_alert(self, alert_id: UUID, update: AlertUpdate, actor: str) -> AlertDetail:
        recorded = acting_name(self._token, actor) if self._token is not None else actor
        detail = await self._store.update_alert(alert_id, update, recorded)
        return detail.with_rule(self._rule_info(detail.rule_id))

    def _find_rule(self, rule_id: str) -> RuleInfo | None:
        return next((rule for rule in self._rules().rules if rule.id == rule_id), None)

    async def stats(self, since: datetime | None, until: datetime | None, bucket_seconds: int) -> AlertStats:
        return await self._store.stats(since, until, bucket_seconds)

    async def rules(self) -> RulesStatus:
        return self._rules()

    async def readiness(self) -> Readiness:
        return await self._readiness()

    async def dead_letters(self, limit: int, cursor: str | None) -> DeadLetterPage:
        return await self._store.list_dead_letters(limit, cursor)

    async def deliveries(self, alert_id: UUID) -> list[DeliveryView]:
        from auditflow.backends.store.sql import SqlAlertStore
        from auditflow.notify.outbox import list_deliveries

        assert isinstance(self._store, SqlAlertStore)  # the outbox lives in the alert store's database
        return await list_deliveries(self._store, alert_id)

    async def channels(self) -> ChannelList:
        if self._channels is None:
            return ChannelList(configured=False, detail=NOT_CONFIGURED, channels=[])
        return await self._channels.list()

    async def test_channel(self, name: str, actor: str) -> ChannelTestResult:
        if self._channels is None:
            raise NotFound(f"channel {name!r} not found: {NOT_CONFIGURED}")
        recorded = acting_name(self._token, actor) if self._token is not None else actor
        return await self._channels.test(name, recorded)


def _query_params(query: AlertQuery) -> list[tuple[str, str]]:
    params: list[tuple[str, str]] = [("severity", str(s)) for s in query.severity or ()]
    params += [("status", str(s)) for s in query.status or ()]
    for name in ("rule_id", "user_id", "server_hostname", "cursor"):
        value = getattr(query, name)
        if value is not None:
            params.append((name, value))
    for name in ("since", "until"):
        moment = getattr(query, name)
        if moment is not None:
            params.append((name, format_utc(moment)))
    if query.text:
        params.append(("q", query.text))
    params.append(("limit", str(query.limit)))
    return params


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return str(detail)[:300] if detail else response.reason_phrase


class HttpAlertSource(AlertSource):
    """Distributed mode: the notification service's REST API, with the dashboard's own API token.

    The signed-in dashboard user travels in `X-AuditFlow-Actor`, which the API records as
    "user via token"; the token needs the `delegate` scope there (besides `read` and `triage`).
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        readiness_urls: Sequence[str] = (),
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._base = base_url.rstrip("/")
        own = f"{self._base}/readyz"
        self._readiness_urls = [own, *(u for u in readiness_urls if u.rstrip("/") != own)]
        self._client = httpx.AsyncClient(
            timeout=timeout,
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": "auditflow-dashboard"},
        )
        self._auth = {"Authorization": f"Bearer {token}"}

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _request(
        self,
        method: str,
        path: str,
        model: type[_M],
        *,
        throttled: Callable[[int], Exception] | None = None,
        **kwargs: Any,
    ) -> _M:
        headers = {**self._auth, **kwargs.pop("headers", {})}
        try:
            response = await self._client.request(method, f"{self._base}{path}", headers=headers, **kwargs)
        except httpx.TransportError as exc:
            raise BackendUnavailable(f"notification API unreachable: {type(exc).__name__}") from exc
        if response.status_code == 404:
            raise NotFound(_detail(response) if path.startswith("/api/v1/channels") else path)
        if response.status_code == 429 and throttled is not None:
            retry = response.headers.get("retry-after", "")
            raise throttled(int(retry) if retry.isdigit() else 5)
        if response.status_code in (401, 403):
            # The API names the missing scope; the operator needs it to fix the token's entry.
            raise BackendError(
                f"the notification API refused the dashboard's token ({response.status_code}): {_detail(response)}"
            )
        if response.status_code >= 500:
            raise BackendUnavailable(f"notification API answered {response.status_code}")
        if response.status_code == 422 and path == "/api/v1/alerts":
            # A cursor or filter value refused by name: a ValueError, as the store itself raises.
            raise ValueError(f"notification API refused the request: {response.text[:300]}")
        if response.status_code >= 400:
            raise BackendError(f"notification API answered {response.status_code}: {response.text[:300]}")
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            raise BackendError(f"unexpected answer from the notification API for {path}") from exc

    async def list_alerts(self, query: AlertQuery) -> AlertPage:
        return await self._request("GET", "/api/v1/alerts", AlertPage, params=_query_params(query))

    async def get_alert(self, alert_id: UUID) -> AlertDetail:
        return await self._request("GET", f"/api/v1/alerts/{alert_id}", AlertDetail)

    async def update_alert(self, alert_id: UUID, update: AlertUpdate, actor: str) -> AlertDetail:
        return await self._request(
            "PATCH",
            f"/api/v1/alerts/{alert_id}",
            AlertDetail,
            content=update.model_dump_json(exclude_none=True),
            headers={"Content-Type": "application/json", ACTOR_HEADER: actor},
        )

    async def stats(self, since: datetime | None, until: datetime | None, bucket_seconds: int) -> AlertStats:
        params = {"bucket_seconds": str(bucket_seconds)}
        if since is not None:
            params["since"] = format_utc(since)
        if until is not None:
            params["until"] = format_utc(until)
        return await self._request("GET", "/api/v1/alerts/stats", AlertStats, params=params)

    async def rules(self) -> RulesStatus:
        return await self._request("GET", "/api/v1/rules", RulesStatus)

    async def dead_letters(self, limit: int, cursor: str | None) -> DeadLetterPage:
        params = {"limit": str(limit)} | ({"cursor": cursor} if cursor else {})
        return await self._request("GET", "/api/v1/dead-letters", DeadLetterPage, params=params)

    async def deliveries(self, alert_id: UUID) -> list[DeliveryView]:
        return (await self._request("GET", f"/api/v1/alerts/{alert_id}/deliveries", DeliveryList)).root

    async def channels(self) -> ChannelList:
        return await self._request("GET", "/api/v1/channels", ChannelList)

    async def test_channel(self, name: str, actor: str) -> ChannelTestResult:
        return await self._request(
            "POST",
            f"/api/v1/channels/{quote(name, safe='')}/test",
            ChannelTestResult,
            throttled=lambda seconds: ChannelTestThrottled(name, seconds),
            headers={ACTOR_HEADER: actor},
        )

    async def _one_readiness(self, url: str) -> Readiness:
        name = urlsplit(url).netloc or url
        try:
            response = await self._client.get(url)
            if response.status_code not in (200, 503):
                raise BackendError(f"answered {response.status_code}")
            return Readiness.model_validate_json(response.content)
        except (httpx.TransportError, BackendError, ValidationError) as exc:
            reason = "unreachable" if isinstance(exc, httpx.TransportError) else "unexpected answer"
            down = DependencyStatus(
                name="service", status="down", critical=True, detail=url, last_error=reason, last_change=utcnow()
            )
            return Readiness(status="not_ready", service=name, dependencies=[down])

    async def readiness(self) -> Readiness:
        """The readiness of the notification API, merged with every other configured service's."""
        reports = [await self._one_readiness(url) for url in self._readiness_urls]
        if len(reports) == 1:
            return reports[0]
        order = ["ready", "degraded", "not_ready"]
        worst = max((r.status for r in reports), key=order.index)
        dependencies = [
            dep.model_copy(update={"name": f"{report.service}: {dep.name}"})
            for report in reports
            for dep in report.dependencies
        ]
        return Readiness(status=worst, service="dashboard", dependencies=dependencies)
