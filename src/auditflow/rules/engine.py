"""The detector: evaluates a batch of events against the current rules and turns window-state hits
into alerts, with one state round trip per call. The caller chooses the batch: the analysis service
splits what it consumes into chunks of whole messages, each closed once it holds `DETECT_CHUNK`
events, and makes one call per chunk, in order."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from functools import partial
from typing import Any
from uuid import UUID

import orjson
from pydantic_core import TzInfo

from auditflow.backends.state.base import Hit, RuleKind, WindowOp, WindowState
from auditflow.model.alert import MAX_ALERT_EVENT_IDS, MAX_SAMPLE_EVENTS, Alert
from auditflow.model.event import Event
from auditflow.model.timeutil import from_millis, to_millis
from auditflow.rules.conditions import specialise
from auditflow.rules.fields import Getter, format_duration, group_value, make_getter, to_ms
from auditflow.rules.prefilter import RuleGate
from auditflow.rules.requirements import Requirements, rule_requirements
from auditflow.rules.ruleset import RuleSet
from auditflow.rules.schema import MatchRule, Rule, SequenceRule, ThresholdRule
from auditflow.rules.template import Template

MATCH_DEDUP_WINDOW_MS = 60_000
_ZERO = timedelta(0)


# The last fixed-offset tzinfo found at offset zero: validated timestamps share one (pydantic's).
_zero_offset: list[tzinfo] = [UTC]
_EPOCH_DAY = date(1970, 1, 1).toordinal()


def _epoch_ms(value: datetime) -> int:
    """`to_millis`, from the fields of a value at offset zero (validated events are): datetime's
    own arithmetic on pydantic's tzinfo costs three times as much."""
    if value.tzinfo is not _zero_offset[0]:
        zone = value.tzinfo
        if zone.__class__ not in (timezone, TzInfo) or value.utcoffset() != _ZERO:
            return to_millis(value)
        _zero_offset[0] = zone  # a fixed offset: zero for every value
    days = value.toordinal() - _EPOCH_DAY
    seconds = days * 86_400 + value.hour * 3_600 + value.minute * 60 + value.second
    return seconds * 1_000 + value.microsecond // 1_000


def _event_id(event: Event) -> str:
    """`str(event.event_id)`, encoded by orjson: UUID's own `__str__` costs five times as much."""
    return orjson.dumps(event.event_id)[1:-1].decode()


def _payload(event: Event) -> bytes:
    """The event as stored in the window state. orjson over the validated fields is about ten
    times cheaper than the model's serializer and parses back to an equal event; details that
    orjson cannot encode (Python objects put there by in-process producers) take the slow way."""
    try:
        # Copied to a bytes object of its own size: orjson's result keeps a 4 KiB allocation,
        # and payloads live in an in-process window state for as long as the window.
        return bytes(memoryview(orjson.dumps(event.__dict__, option=orjson.OPT_UTC_Z)))
    except TypeError:
        return event.model_dump_json().encode()


def _sent_payload(event: Event) -> bytes:
    """`_payload` for a state that only sends it (to Redis): no copy, it is dropped once sent."""
    try:
        return orjson.dumps(event.__dict__, option=orjson.OPT_UTC_Z)
    except TypeError:
        return event.model_dump_json().encode()


@dataclass(frozen=True, slots=True)
class _Plan:
    """A rule flattened for the hot path: its tests, accessors and the fixed parts of its ops."""

    rule: Rule
    kind: RuleKind
    # Whether the state keeps the event's payload: a match rule's ops carry none, as the alerts of
    # a batch take their events from the batch itself.
    keeps_payload: bool
    test: Callable[[Event], bool] | None  # None for sequences, which test per step
    # A sequence's steps that an event can match, as (step number, test).
    step_tests: tuple[tuple[int, Callable[[Event], bool]], ...]
    group_fields: tuple[str, ...]
    group_getters: tuple[Getter, ...]
    # Sequences whose steps group by fields of their own: the distinct field lists' getters, and
    # for each step the index of its list. Empty when every step uses the rule's `group_by`.
    step_group_getters: tuple[tuple[Getter, ...], ...]
    step_group_of: tuple[int, ...]
    window_ms: int
    suppress_ms: int
    count: int
    step_counts: tuple[int, ...]
    ordered: bool  # False for a sequence whose steps may happen in any order
    distinct: Getter | None  # a distinct-count threshold: the field it counts
    template: Template
    extras: dict[str, Any]
    requirements: Requirements  # what the rule gate checks before the tests run


# A WindowOp from its fields in order, without the named tuple's argument handling.
_new_op: Callable[[tuple[Any, ...]], WindowOp] = partial(tuple.__new__, WindowOp)


def _plan(rule: Rule) -> _Plan:
    suppress_ms = rule.suppress_ms
    extras: dict[str, Any] = {"rule_id": rule.id, "rule_name": rule.name}
    step_counts: tuple[int, ...] = ()
    distinct: Getter | None = None
    step_group_getters: tuple[tuple[Getter, ...], ...] = ()
    step_group_of: tuple[int, ...] = ()
    if isinstance(rule, MatchRule):
        window_ms, count = max(suppress_ms, MATCH_DEDUP_WINDOW_MS), 1
        test: Callable[[Event], bool] | None = rule.where.test
        step_tests: tuple[tuple[int, Callable[[Event], bool]], ...] = ()
    elif isinstance(rule, ThresholdRule):
        window_ms, count = to_ms(rule.window), rule.count
        test, step_tests = rule.where.test, ()
        extras.update(count=rule.count, window=format_duration(rule.window))
        if rule.distinct is not None:
            distinct = make_getter(rule.distinct)
            extras["distinct"] = rule.distinct
    else:
        window_ms, count = to_ms(rule.window), 1
        step_counts = tuple(step.count for step in rule.steps)
        test, step_tests = None, tuple((i, step.where.test) for i, step in enumerate(rule.steps))
        extras.update(count=step_counts[0], window=format_duration(rule.window))
        fields = rule.step_group_by
        if any(step_fields != rule.group_by for step_fields in fields):
            distinct_fields = list(dict.fromkeys(fields))
            step_group_getters = tuple(tuple(make_getter(path) for path in f) for f in distinct_fields)
            step_group_of = tuple(distinct_fields.index(f) for f in fields)
    return _Plan(
        rule=rule,
        kind=rule.kind,
        keeps_payload=not isinstance(rule, MatchRule),
        test=test,
        step_tests=step_tests,
        group_fields=rule.group_by,
        group_getters=tuple(make_getter(path) for path in rule.group_by),
        step_group_getters=step_group_getters,
        step_group_of=step_group_of,
        window_ms=window_ms,
        suppress_ms=suppress_ms,
        count=count,
        step_counts=step_counts,
        ordered=not isinstance(rule, SequenceRule) or rule.ordered,
        distinct=distinct,
        template=rule.template,
        extras=extras,
        requirements=rule_requirements(rule),
    )


def _for_event_type(plan: _Plan, event_type: str) -> _Plan | None:
    """The plan for events of one type: its tests without their `event_type` entries (the index
    has tested that), without the steps no event of the type matches. None when it cannot fire."""
    rule = plan.rule
    if isinstance(rule, SequenceRule):
        tests = ((i, specialise(step.where, event_type)) for i, step in enumerate(rule.steps))
        step_tests = tuple((i, test) for i, test in tests if test is not None)
        return replace(plan, step_tests=step_tests) if step_tests else None
    test = specialise(rule.where, event_type)
    return replace(plan, test=test) if test is not None else None


def _keyed_steps(
    plan: _Plan, event: Event, matched_steps: tuple[int, ...]
) -> list[tuple[list[str | None], tuple[int, ...]]]:
    """The group of each step the event matched, for a sequence whose steps group by fields of
    their own: one (group, steps) per distinct group, in step order. Values are matched by
    position, so a group is keyed, and named in alerts, as the rule's `group_by` fields."""
    computed: dict[int, list[str | None]] = {}
    by_key: dict[tuple[str | None, ...], tuple[list[str | None], list[int]]] = {}
    for step in matched_steps:
        fields = plan.step_group_of[step]
        group = computed.get(fields)
        if group is None:
            group = computed[fields] = [group_value(get(event)) for get in plan.step_group_getters[fields]]
        entry = by_key.get(tuple(group))
        if entry is None:
            by_key[tuple(group)] = (group, [step])
        else:
            entry[1].append(step)
    return [(group, tuple(steps)) for group, steps in by_key.values()]


def _plan_requirements(plan: _Plan) -> Requirements:
    return plan.requirements


def _no_requirements(_plan: _Plan) -> Requirements:
    return ()


@dataclass(slots=True)
class _Pending:
    """Hits of one alert id within a batch, merged."""

    alert_id: str
    plan: _Plan
    group: list[str | None]
    event: Event
    occurrences: int
    first_seen_ms: int
    last_seen_ms: int
    events: dict[str, bytes] = field(default_factory=dict)  # event_id -> payload, oldest first


class Detector:
    """Apply the current rules to event batches. `rules` is called once per batch, so a hot
    reload takes effect at the next batch boundary. `prefilter=False` evaluates every rule of an
    event's type for every event: the reference the rule gate is measured and tested against."""

    def __init__(self, state: WindowState, rules: Callable[[], RuleSet], *, prefilter: bool = True) -> None:
        self._state = state
        self._payload = _payload if state.holds_payloads else _sent_payload
        self._rules = rules
        self._requirements_of = _plan_requirements if prefilter else _no_requirements
        self._plans_for: RuleSet | None = None
        self._index: dict[str, RuleGate[_Plan]] = {}
        self._unpinned: RuleGate[_Plan] = RuleGate((), _plan_requirements)

    async def process(self, events: Sequence[Event]) -> list[Alert]:
        """Evaluate the batch, apply all its ops in one state call, return one alert per alert id hit."""
        self._refresh(self._rules())
        ops: list[WindowOp] = []
        origins: list[tuple[_Plan, Event, list[str | None]]] = []
        matched: dict[str, Event] = {}  # event id -> event, to skip re-parsing payloads of this batch
        index, unpinned = self._index, self._unpinned
        new_op, payload_of = _new_op, self._payload
        for event in events:
            plans = index.get(event.event_type, unpinned).select(event)
            if not plans:
                continue
            event_id: str | None = None
            ts_ms = 0
            payload: bytes | None = None
            for plan in plans:
                matched_steps: tuple[int, ...] = ()
                distinct: str | None = None
                if plan.test is not None:
                    if not plan.test(event):
                        continue
                    if plan.distinct is not None:
                        distinct = group_value(plan.distinct(event))
                        if distinct is None:
                            continue  # nothing to count
                else:
                    matched_steps = tuple([i for i, test in plan.step_tests if test(event)])
                    if not matched_steps:
                        continue
                if event_id is None:
                    event_id = _event_id(event)
                    matched[event_id] = event
                    ts_ms = _epoch_ms(event.timestamp)
                if payload is None and plan.keeps_payload:  # only events some window keeps pay for it
                    payload = payload_of(event)
                keyed: Sequence[tuple[list[str | None], tuple[int, ...]]]
                if plan.step_group_of:
                    keyed = _keyed_steps(plan, event, matched_steps)
                else:
                    keyed = (([group_value(get(event)) for get in plan.group_getters], matched_steps),)
                for group, steps in keyed:
                    # The fields in WindowOp's order; the alert id is left to the backend.
                    fields = (
                        plan.rule.id, orjson.dumps(group).decode(), plan.kind, event_id, ts_ms, payload or b"",
                        plan.window_ms, plan.suppress_ms, "", plan.count, plan.step_counts, steps, distinct,
                        plan.ordered,
                    )  # fmt: skip
                    ops.append(new_op(fields))
                    origins.append((plan, event, group))
        if not ops:
            return []
        hits = await self._state.apply(ops)
        return [self._alert(pending, matched) for pending in self._merge(hits, origins).values()]

    def _refresh(self, ruleset: RuleSet) -> None:
        if ruleset is self._plans_for:
            return
        plans = {rule.id: _plan(rule) for rule in ruleset.enabled}
        event_types = {t for rule in ruleset.enabled for t in (rule.event_types or ())}
        self._index = {}
        for t in event_types:
            typed = (_for_event_type(plans[r.id], t) for r in ruleset.for_event_type(t))
            self._index[t] = RuleGate(
                [plan for plan in typed if plan is not None], self._requirements_of, fixed={"event_type": t}
            )
        self._unpinned = RuleGate([plans[r.id] for r in ruleset.unpinned], self._requirements_of)
        self._plans_for = ruleset

    @staticmethod
    def _merge(hits: list[Hit], origins: list[tuple[_Plan, Event, list[str | None]]]) -> dict[str, _Pending]:
        merged: dict[str, _Pending] = {}
        for hit in hits:
            plan, event, group = origins[hit.op_index]
            pending = merged.get(hit.alert_id)
            if pending is None:
                pending = merged[hit.alert_id] = _Pending(
                    hit.alert_id, plan, group, event, hit.occurrences, hit.first_seen_ms, hit.last_seen_ms
                )
            else:
                pending.event = event  # the latest op that hit is the triggering event
                pending.occurrences = max(pending.occurrences, hit.occurrences)
                pending.first_seen_ms = min(pending.first_seen_ms, hit.first_seen_ms)
                pending.last_seen_ms = max(pending.last_seen_ms, hit.last_seen_ms)
            for event_id, payload in hit.events:
                pending.events.setdefault(event_id, payload)
        return merged

    @staticmethod
    def _alert(pending: _Pending, batch: dict[str, Event]) -> Alert:
        plan, event, rule = pending.plan, pending.event, pending.plan.rule
        group = dict(zip(plan.group_fields, pending.group, strict=True))
        values: dict[str, Any] = {**plan.extras, "occurrences": pending.occurrences, **group}

        def lookup(name: str) -> Any:
            if name in values:
                return values[name]
            return group_value(event.field_value(name))

        event_ids = list(pending.events)[:MAX_ALERT_EVENT_IDS]
        samples: list[Event] = []
        for event_id in event_ids[:MAX_SAMPLE_EVENTS]:
            known = batch.get(event_id)
            samples.append(known if known is not None else Event.model_validate_json(pending.events[event_id]))
        if plan.distinct is not None:
            # The values the alert counted, first seen first (its samples are the first event of each).
            values["distinct_values"] = ", ".join(
                dict.fromkeys(v for v in (group_value(plan.distinct(e)) for e in samples) if v is not None)
            )
        return Alert(
            alert_id=UUID(pending.alert_id),
            rule_id=rule.id,
            rule_name=rule.name,
            rule_kind=rule.kind,
            severity=rule.severity,
            description=plan.template.render(lookup),
            group=group,
            user_id=group.get("user_id", event.user_id),
            server_hostname=group.get("server_hostname", event.server_hostname),
            first_seen=from_millis(pending.first_seen_ms),
            last_seen=from_millis(pending.last_seen_ms),
            occurrences=max(pending.occurrences, 1),
            event_ids=[UUID(event_id) for event_id in event_ids],
            sample_events=samples,
            tags=list(rule.tags),
        )
