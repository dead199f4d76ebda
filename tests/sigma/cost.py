"""Per-event CPU of the detector with Sigma rules beside the shipped pack:
`python -m tests.sigma.cost SIGMA_PATH...` (SigmaHQ's `rules/linux/auditd`, `rules/linux/builtin`,
`rules/application/kubernetes`, for instance).

The Sigma rules are converted as `import-sigma` does; the sets are the shipped pack, the pack plus
every converted rule, and the pack plus 500 rules (the converted ones repeated under new ids). The
events are the bench's generated lines of every parser format, parsed; each set runs them through
a `Detector` over memory window state in batches of 1,000, best of five, in process CPU time. Compare
the ratios to the shipped pack between runs: the machine's speed cancels out of them.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from auditflow.backends.state import create_state
from auditflow.bench.ingest import _parser
from auditflow.bench.loglines import SAMPLES
from auditflow.model import Event
from auditflow.parsers.base import Unparsed
from auditflow.rules import Detector, Rule, RuleSet, load_rules
from auditflow.rules.sigma.importer import import_sigma

LINES_PER_FORMAT = 1000


def events() -> list[Event]:
    parsed: list[Event] = []
    for name, sample in SAMPLES.items():
        parser = _parser(sample)
        for number, line in enumerate(sample.generate(LINES_PER_FORMAT, 7)):
            outcome = parser.feed(line, key=f"{name}:{number}")
            if not isinstance(outcome, Unparsed):
                parsed.extend(outcome)
        parsed.extend(parser.flush())
    return parsed


def with_extra(pack: RuleSet, rules: list[dict[str, Any]], total: int) -> RuleSet:
    adapter = TypeAdapter[Rule](Rule)
    extra = [
        adapter.validate_python({**rule, "id": rule["id"] if n < len(rules) else f"{rule['id']}-{n // len(rules)}"})
        for n, rule in ((n, rules[n % len(rules)]) for n in range(total))
    ]
    return RuleSet.build([*pack.rules, *extra], version="cost", source="cost")


async def per_event_us(ruleset: RuleSet, batch: list[Event], repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        async with create_state("memory://") as state:
            detector = Detector(state, lambda: ruleset)
            started = time.process_time()
            for i in range(0, len(batch), 1000):
                await detector.process(batch[i : i + 1000])
            best = min(best, time.process_time() - started)
    return best / len(batch) * 1e6


async def main(paths: list[Path]) -> None:
    report = import_sigma(paths)
    rules = [converted.rule for converted in report.rules]
    pack = load_rules(None)
    batch = events()
    sets = {
        "shipped": pack,
        f"+{len(rules)}": with_extra(pack, rules, len(rules)),
        "+500": with_extra(pack, rules, 500),
    }
    base = 0.0
    for label, ruleset in sets.items():
        cost = await per_event_us(ruleset, batch)
        base = base or cost
        print(f"{label:>8} {len(ruleset):4} rules {cost:8.1f} µs/event  {cost / base:5.2f}x")
    print(f"{len(batch)} events")


if __name__ == "__main__":
    asyncio.run(main([Path(arg) for arg in sys.argv[1:]]))
