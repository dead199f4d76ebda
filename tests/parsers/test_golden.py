"""Golden files: each tests/parsers/golden/<name>.log is parsed line by line and compared with
<name>.expected.jsonl (one record per input line: its events, or the reason it was not parsed;
then what `flush()` emitted, for formats that hold records back).

The committed .expected.jsonl files are the truth, checked by hand. After a deliberate change,
AUDITFLOW_REGENERATE_GOLDEN=1 rewrites them; review the diff before committing it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from auditflow.model.event import Event
from auditflow.parsers.base import SourceContext, Unparsed
from auditflow.parsers.registry import create_parser

GOLDEN = Path(__file__).parent / "golden"
REGENERATE = os.environ.get("AUDITFLOW_REGENERATE_GOLDEN") == "1"
# The samples are from the turn of the year: December lines in a file written on 5 January
# belong to the year before, which the expected timestamps show.
CONTEXT = SourceContext(host="collector", reference_time=datetime(2027, 1, 5, 12, 0, tzinfo=UTC))
# The API server's audit lines name no host: without one from the source, events say "kubernetes".
CONTEXT_OF = {"k8s-audit": SourceContext(reference_time=CONTEXT.reference_time)}
# The format each sample is read as (default: syslog).
FORMAT_OF = {"sshd": "sshd", "auditd": "auditd", "journald": "journald", "k8s-audit": "k8s-audit"}


def _checked(events: Sequence[Event]) -> list[dict[str, Any]]:
    dumped = [event.model_dump(mode="json") for event in events]
    # Events are built without validation: what they hold must pass it all the same.
    assert [Event.model_validate(item).model_dump(mode="json") for item in dumped] == dumped
    return dumped


def parse_file(path: Path) -> list[dict[str, Any]]:
    parser = create_parser(FORMAT_OF.get(path.stem, "syslog"), CONTEXT_OF.get(path.stem, CONTEXT))
    records: list[dict[str, Any]] = []
    lines = path.read_bytes().decode("utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for number, line in enumerate(lines, 1):
        outcome = parser.feed(line, key=f"{path.name}:{number}")
        if isinstance(outcome, Unparsed):
            records.append({"line": number, "unparsed": outcome.reason})
        else:
            records.append({"line": number, "events": _checked(outcome)})
    # what a parser still held at the end (auditd's last event): expected only of stateful formats
    rest = parser.flush()
    if rest:
        records.append({"flush": _checked(rest)})
    return records


SAMPLES = sorted(GOLDEN.glob("*.log"))


def test_every_sample_has_expectations() -> None:
    assert {path.stem for path in SAMPLES} >= {"sshd", "sudo", "su", "accounts", "systemd", "headers"} | set(FORMAT_OF)
    if not REGENERATE:
        missing = [p.name for p in SAMPLES if not p.with_suffix(".expected.jsonl").exists()]
        assert missing == []


@pytest.mark.parametrize("path", SAMPLES, ids=lambda path: path.stem)
def test_golden(path: Path) -> None:
    records = parse_file(path)
    expected_path = path.with_suffix(".expected.jsonl")
    if REGENERATE:
        expected_path.write_bytes(
            b"".join(orjson.dumps(record, option=orjson.OPT_SORT_KEYS) + b"\n" for record in records)
        )
    expected = [orjson.loads(line) for line in expected_path.read_bytes().splitlines()]
    assert len(records) == len(expected)
    for record, want in zip(records, expected, strict=True):
        assert record == want, f"{path.name} line {record.get('line', 'flush')}"


@pytest.mark.parametrize("path", SAMPLES, ids=lambda path: path.stem)
def test_every_event_keeps_its_original_lines(path: Path) -> None:
    lines = set(path.read_bytes().decode("utf-8").split("\n"))
    for record in parse_file(path):
        for event in record.get("events", record.get("flush", [])):
            # an assembled auditd event keeps each of its records' lines
            assert set(event["details"]["event"]["original"].split("\n")) <= lines
