"""Parsing throughput of the sshd format against a baseline, on generated auth.log lines:
`python -m tests.parsers.throughput [LINES]`. The baseline is a plain loop of one `re` match per
line that does nothing else; the ratio is what to compare between runs on a noisy machine. Both
are timed in process CPU time, which other load on the machine disturbs less than wall time.

The lines and the loops are the bench's (`auditflow bench --scenario ingest` runs them for every
format, and end to end); this is the quick check of the one format with a target."""

from __future__ import annotations

import sys

from auditflow.bench.ingest import baseline_rate, parse_rate
from auditflow.bench.loglines import SAMPLES


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    sample = SAMPLES["sshd"]
    lines = list(sample.generate(count, 7))
    baseline = max(baseline_rate(sample, lines) for _ in range(3))
    for keyed in (False, True):
        # Best of three: on a shared machine the slowest runs measure the neighbours.
        parsed = max(parse_rate(sample, lines, keyed=keyed)[0] for _ in range(3))
        label = "with keys (deterministic ids)" if keyed else "without keys"
        print(
            f"{count} lines {label}: parser {parsed:,.0f} lines/s, baseline re loop {baseline:,.0f} lines/s, "
            f"ratio {parsed / baseline:.3f}"
        )


if __name__ == "__main__":
    main()
