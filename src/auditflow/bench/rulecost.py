"""The rules scenario: per-event CPU of the detector with extra rules beside the shipped pack.

The events are the bench's generated lines of every parser format (`loglines.SAMPLES`), parsed
with position keys, so their ids, and the ids of the alerts they raise, are the same in every run.
Each rule set runs them through a `Detector` over memory window state in batches of 1,000, best of
`repeats`, in process CPU time: once with the rule gate (what the product runs) and once with every
rule evaluated for every event of its types (the reference). The shipped pack alone is measured in
the same run and is the baseline of the ratios, so the machine's speed cancels out of them.

Correctness is part of the result: the pack's alerts must be the same with and without the extra
rules, and the gated detector must raise exactly the alerts of the reference.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from auditflow.backends.state import create_state
from auditflow.bench.loglines import SAMPLES
from auditflow.bench.results import RuleSetCost, RulesResult
from auditflow.errors import RuleError
from auditflow.model.event import Event
from auditflow.parsers.base import SourceContext, Unparsed
from auditflow.parsers.registry import create_parser
from auditflow.rules import Detector, Rule, RuleSet, load_rules
from auditflow.rules.conditions import SUBSTRING_OPERATORS, compile_where
from auditflow.rules.prefilter import RuleGate
from auditflow.rules.requirements import rule_requirements
from auditflow.rules.schema import MatchRule, SequenceRule, ThresholdRule

BATCH = 1000
# RFC 3164 lines have no year: the generated ones are read as of this reference time.
_CONTEXT = SourceContext(host="bench", reference_time=datetime(2027, 1, 1, tzinfo=UTC))
_rule = TypeAdapter[Rule](Rule)

Progress = Callable[[str, int, int], None]


def parsed_events(lines_per_format: int, seed: int) -> list[Event]:
    """Generated lines of every sample, parsed with position keys (deterministic event ids)."""
    events: list[Event] = []
    for name, sample in SAMPLES.items():
        parser = create_parser(sample.format, _CONTEXT)
        for number, line in enumerate(sample.generate(lines_per_format, seed)):
            outcome = parser.feed(line, key=f"{name}:{number}")
            if not isinstance(outcome, Unparsed):
                events.extend(outcome)
        events.extend(parser.flush())
    return events


def extra_rules(rule_paths: Sequence[Path], sigma_paths: Sequence[Path]) -> tuple[list[Rule], list[str]]:
    """The rules of `--rules` paths (as `auditflow run --rules` loads them) and of `--sigma` paths
    (every Sigma file below, converted as `import-sigma` does), and a note per source."""
    rules: list[Rule] = []
    notes: list[str] = []
    for path in rule_paths:
        loaded = load_rules(path)  # RuleError names every problem of every file
        rules.extend(loaded.rules)
        skipped = f", {len(loaded.warnings)} Sigma rules not loaded" if loaded.warnings else ""
        notes.append(f"{path}: {len(loaded.rules)} rules{skipped}")
    if sigma_paths:
        from auditflow.rules.sigma.importer import import_sigma

        report = import_sigma(list(sigma_paths))
        rules.extend(_rule.validate_python(converted.rule) for converted in report.rules)
        left_out = report.count("unsupported") + report.count("broken")
        notes.append(
            f"{', '.join(map(str, sigma_paths))}: {len(report.rules)} Sigma rules converted, {left_out} not convertible"
        )
    return rules, notes


def padded(rules: Sequence[Rule], total: int, *, vary: bool = False) -> list[Rule]:
    """`total` rules: the given ones, then copies of them in turn under new ids (`<id>-copy<n>`);
    with `vary`, each copy of a match or threshold rule looks for other substrings (`-<n>` added
    to every `contains`, `startswith` and `endswith` text), so the copies are distinct rules with
    the same shape, as a larger rule set of the same sources would be."""
    if not rules:
        return []
    out = list(rules[:total])
    for n in range(len(out), total):
        rule, copy = rules[n % len(rules)], n // len(rules)
        update: dict[str, Any] = {"id": f"{rule.id}-copy{copy}"}
        if vary and isinstance(rule, MatchRule | ThresholdRule):
            update["where"] = compile_where(_varied(rule.where.raw, f"-{copy}"))
        out.append(rule.model_copy(update=update))
    return out


def _varied(raw: Any, suffix: str) -> Any:
    if isinstance(raw, Mapping):
        return {
            key: [f"{v}{suffix}" for v in spec]
            if key in SUBSTRING_OPERATORS and isinstance(spec, list)
            else f"{spec}{suffix}"
            if key in SUBSTRING_OPERATORS and isinstance(spec, str)
            else _varied(spec, suffix)
            for key, spec in raw.items()
        }
    if isinstance(raw, list):
        return [_varied(item, suffix) for item in raw]
    return raw


def _ruleset(rules: Sequence[Rule], label: str) -> RuleSet:
    ids = [rule.id for rule in rules]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise RuleError(f"rule id {duplicate!r} is defined twice among the pack and the extra rules")
    return RuleSet.build(rules, version=label, source=label)


async def _run(ruleset: RuleSet, events: Sequence[Event], *, gated: bool, repeats: int) -> tuple[float, list[str]]:
    """Best CPU µs per event over `repeats` runs, and the alert ids of the last, as `rule_id/alert_id`."""
    best = float("inf")
    alerts: list[str] = []
    for _ in range(repeats):
        async with create_state("memory://") as state:
            detector = Detector(state, lambda: ruleset, prefilter=gated)
            await detector.process(())  # builds the plans and the gate: not per-event work
            raised: list[str] = []
            started = time.process_time()
            for i in range(0, len(events), BATCH):
                raised.extend(f"{a.rule_id}/{a.alert_id}" for a in await detector.process(events[i : i + BATCH]))
            best = min(best, time.process_time() - started)
            alerts = raised
    return best / max(len(events), 1) * 1e6, sorted(alerts)


def _any_step(rule: SequenceRule) -> Callable[[Event], bool]:
    steps = tuple(step.where.test for step in rule.steps)
    return lambda event: any(step(event) for step in steps)


def breakdown(ruleset: RuleSet, events: Sequence[Event], *, repeats: int) -> tuple[float, float]:
    """CPU µs per event of the rule gate alone (per-type gates, as the detector builds them) and of
    evaluating the conditions of the rules it selects, best of `repeats` each."""
    tests: dict[str, Callable[[Event], bool]] = {}
    for rule in ruleset.enabled:
        tests[rule.id] = _any_step(rule) if isinstance(rule, SequenceRule) else rule.where.test
    types = {t for rule in ruleset.enabled for t in (rule.event_types or ())}
    gates = {t: RuleGate(ruleset.for_event_type(t), rule_requirements, fixed={"event_type": t}) for t in sorted(types)}
    unpinned = RuleGate(ruleset.unpinned, rule_requirements)
    for event in events:  # builds the gate's tree: not per-event work
        gates.get(event.event_type, unpinned).select(event)
    gate = conditions = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        chosen = [gates.get(event.event_type, unpinned).select(event) for event in events]
        gate = min(gate, time.process_time() - started)
        started = time.process_time()
        for event, rules in zip(events, chosen, strict=True):
            for rule in rules:
                tests[rule.id](event)
        conditions = min(conditions, time.process_time() - started)
    per_event = 1e6 / max(len(events), 1)
    return gate * per_event, conditions * per_event


async def measure(
    pack: RuleSet,
    extra: Sequence[Rule],
    *,
    counts: Sequence[int],
    vary: bool = False,
    events: Sequence[Event],
    repeats: int,
    reference: bool,
    progress: Progress,
) -> list[RuleSetCost]:
    """The pack alone, then the pack plus each count of extra rules (padded by copies)."""
    pack_ids = {rule.id for rule in pack.rules}
    sets = [("shipped pack", pack)]
    for count in counts:
        rules = padded(extra, count, vary=vary)
        how = " (copies look for other substrings)" if vary and count > len(extra) else ""
        sets.append((f"+ {len(rules)} rules{how}", _ruleset([*pack.rules, *rules], f"pack+{len(rules)}")))
    results: list[RuleSetCost] = []
    pack_alerts: list[str] | None = None
    for index, (label, ruleset) in enumerate(sets):
        progress(f"rules: {label}", index, len(sets))
        cost, alerts = await _run(ruleset, events, gated=True, repeats=repeats)
        reference_cost = reference_alerts = None
        if reference:
            reference_cost, reference_alerts = await _run(ruleset, events, gated=False, repeats=max(1, repeats // 2))
        gate_cost, conditions_cost = breakdown(ruleset, events, repeats=repeats)
        own = [a for a in alerts if a.partition("/")[0] in pack_ids]
        if pack_alerts is None:
            pack_alerts = own
        base = results[0].us_per_event if results else cost
        results.append(
            RuleSetCost(
                label=label,
                rules=len(ruleset.enabled),
                us_per_event=cost,
                ratio=cost / base,
                us_per_event_every_rule=reference_cost,
                ratio_every_rule=reference_cost / base if reference_cost is not None else None,
                gate_us_per_event=gate_cost,
                conditions_us_per_event=conditions_cost,
                pack_alerts=len(own),
                extra_alerts=len(alerts) - len(own),
                pack_alerts_unchanged=own == pack_alerts,
                same_alerts_as_every_rule=None if reference_alerts is None else reference_alerts == alerts,
            )
        )
    return results


async def run_rules(
    rule_paths: Sequence[Path],
    sigma_paths: Sequence[Path],
    *,
    rules_count: int | None,
    vary: bool = False,
    lines_per_format: int,
    repeats: int,
    reference: bool,
    seed: int,
    progress: Progress,
) -> RulesResult:
    progress("rules: loading", 0, 1)
    pack = load_rules(None)
    extra, notes = extra_rules(rule_paths, sigma_paths)
    counts = sorted({len(extra)} | ({rules_count} if rules_count else set())) if extra else []
    progress("rules: parsing events", 0, 1)
    events = parsed_events(lines_per_format, seed)
    sets = await measure(
        pack,
        extra,
        counts=counts,
        vary=vary,
        events=events,
        repeats=repeats,
        reference=reference,
        progress=progress,
    )
    return RulesResult(events=len(events), lines_per_format=lines_per_format, sources=notes, sets=sets)
