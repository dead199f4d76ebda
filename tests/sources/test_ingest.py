"""`auditflow ingest`: parse, submit, summarise; ids stable across runs; backfilled files detect as
if live; gzip and stdin; clear errors; exit code 1 when nothing could be parsed."""

from __future__ import annotations

import gzip
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from auditflow.cli import main
from auditflow.model.event import Event
from auditflow.parsers.registry import create_parser, detect_format
from auditflow.sources.ingest import IngestError, IngestOptions, ingest_paths
from tests.sources.receiver import Receiver
from tests.sources.samples import auth_log as sample_auth_log

MONTHS_AGO = time.time() - 200 * 86400


@pytest.fixture
def auth_log(tmp_path: Path) -> Path:
    path = tmp_path / "auth.log"
    path.write_text(sample_auth_log(), encoding="utf-8")
    os.utime(path, (MONTHS_AGO, MONTHS_AGO))
    return path


class Recording:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.lines: list[int] = []

    def send(self, events: Sequence[Event], lines: Sequence[int], name: str) -> None:
        self.events.extend(events)
        self.lines.extend(lines)


def _ingest(paths: list[str], **options: Any) -> tuple[Recording, Any]:
    sink = Recording()
    result = ingest_paths(
        paths,
        sink,
        IngestOptions(**options),
        create_parser=create_parser,
        detect_format=detect_format,
    )
    return sink, result


def test_embedded_ingest_of_an_old_auth_log_raises_the_brute_force_alerts(auth_log: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["ingest", "--embedded", "--data-dir", str(tmp_path / "d"), "--json", str(auth_log)]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert (summary["lines"], summary["events"], summary["sent"]) == (8, 7, 7)
    assert summary["unparsed"] == {"no-header": 1}
    assert summary["files"][0]["format"] == "syslog"
    rules = sorted(alert["rule_id"] for alert in summary["alerts"])
    assert rules == [
        "failed-login-burst",
        "login-after-failure-burst",
        "ssh-brute-force-source",
        "ssh-login-after-brute-force",
    ]
    # Windows ran on event time: the alerts are dated when the attack happened, months ago.
    modified = time.gmtime(MONTHS_AGO)
    year = modified.tm_year if (modified.tm_mon, modified.tm_mday) >= (3, 3) else modified.tm_year - 1
    assert all(alert["first_seen"].startswith(f"{year}-03-03T04:12") for alert in summary["alerts"])
    assert {alert["user_id"] for alert in summary["alerts"]} == {"root"}


def test_text_summary_names_reasons_and_alerts(auth_log: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["ingest", "--embedded", "--data-dir", str(tmp_path / "d"), str(auth_log)])
    assert result.exit_code == 0, result.output
    assert "8 lines read, 7 events made, 7 sent" in result.output
    assert "1 line not understood:" in result.output
    assert "  no-header: 1" in result.output
    assert "4 alerts raised" in result.output
    assert "failed-login-burst" in result.output


def test_the_same_file_gives_the_same_event_ids(auth_log: Path) -> None:
    first, _ = _ingest([str(auth_log)])
    again, _ = _ingest([str(auth_log)])
    ids = [e.event_id for e in first.events]
    assert len(set(ids)) == 7
    assert ids == [e.event_id for e in again.events]
    assert first.lines == [1, 3, 4, 5, 6, 7, 8]


def test_a_different_file_with_the_same_lines_gets_other_ids(auth_log: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.log"
    copy.write_bytes(auth_log.read_bytes())
    first, _ = _ingest([str(auth_log)])
    other, _ = _ingest([str(copy)])
    assert not {e.event_id for e in first.events} & {e.event_id for e in other.events}


def test_gzip_is_read_transparently(auth_log: Path, tmp_path: Path) -> None:
    packed = tmp_path / "auth.log.2.gz"
    packed.write_bytes(gzip.compress(auth_log.read_bytes()))
    os.utime(packed, (MONTHS_AGO, MONTHS_AGO))
    plain, plain_result = _ingest([str(auth_log)])
    unpacked, result = _ingest([str(packed)])
    assert result.totals.as_dict() == plain_result.totals.as_dict()
    assert [e.timestamp for e in unpacked.events] == [e.timestamp for e in plain.events]


def test_year_and_zone_options_reach_the_parser(auth_log: Path) -> None:
    from zoneinfo import ZoneInfo

    sink, _ = _ingest([str(auth_log)], year=2021, tz=ZoneInfo("Europe/Berlin"))
    assert sink.events[0].timestamp.isoformat() == "2021-03-03T03:12:00+00:00"


def test_stdin_is_read_and_reingesting_it_gives_the_same_ids(auth_log: Path) -> None:
    runner = CliRunner()
    args = ["ingest", "--url", "", "--token", "secret", "--json", "-"]
    with Receiver() as receiver:
        args[2] = receiver.url
        first = runner.invoke(main, args, input=auth_log.read_bytes())
        second = runner.invoke(main, args, input=auth_log.read_bytes())
        events = receiver.snapshot()
    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    assert json.loads(first.output)["sent"] == 7
    assert len(events) == 14
    assert [e["event_id"] for e in events[:7]] == [e["event_id"] for e in events[7:]]


def test_http_errors_name_the_file_and_line(auth_log: Path) -> None:
    with Receiver() as receiver:
        receiver.down = True
        result = CliRunner().invoke(main, ["ingest", "--url", receiver.url, "--token", "secret", str(auth_log)])
    assert result.exit_code == 1
    assert f"{auth_log}:1" in result.output
    assert "503" in result.output


def test_nothing_parsed_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "other.log"
    path.write_text("Mar  3 04:12:00 web1 CRON[1]: job done\nMar  3 04:12:01 web1 kernel: eth0 up\n")
    args = ["ingest", "--embedded", "--format", "sshd", "--data-dir", str(tmp_path / "d"), str(path)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert "no line could be parsed" in result.output


def test_forwarded_unparsed_lines_become_raw_events(auth_log: Path) -> None:
    sink, result = _ingest([str(auth_log)], forward_unparsed=True)
    raw = [e for e in sink.events if e.event_type == "log_line_unparsed"]
    assert len(raw) == 1
    assert raw[0].details["event"]["reason"] == "no-header"
    assert "last message repeated" in raw[0].details["event"]["original"]
    assert result.totals.forwarded_raw == 1


def test_missing_file_and_unknown_format_are_named(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match=r"nothing\.log: cannot read"):
        _ingest([str(tmp_path / "nothing.log")])
    runner = CliRunner()
    result = runner.invoke(main, ["ingest", "--embedded", "--format", "nginx", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "'nginx' is not one of auto, syslog, sshd" in result.output
    result = runner.invoke(main, ["ingest", str(tmp_path / "x")])
    assert "--token" in result.output


def test_undetectable_format_asks_for_format(tmp_path: Path) -> None:
    path = tmp_path / "odd.log"
    path.write_text("hello\n")
    with pytest.raises(IngestError, match=r"odd\.log: cannot tell the format .*--format"):
        _ingest([str(path)])
