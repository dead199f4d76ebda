"""Syslog header rules that the golden samples do not pin down alone: year inference around the
turn of the year, zones, explicit years, invalid dates, and the `sshd` format's filter."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from auditflow.model.event import Event
from auditflow.parsers.base import SourceContext, Unparsed
from auditflow.parsers.syslog import SshdParser, SyslogParser, rfc3164_time

LINE = "{stamp} host1 sshd[7]: Failed password for root from 192.0.2.1 port 22 ssh2"


def one_event(parser: SyslogParser, line: str) -> Event:
    outcome = parser.feed(line)
    assert not isinstance(outcome, Unparsed), outcome
    assert len(outcome) == 1
    return outcome[0]


@pytest.mark.parametrize(
    ("stamp", "reference", "expected_year"),
    [
        ("Dec 31 23:59:59", datetime(2027, 1, 1, 0, 5, tzinfo=UTC), 2026),  # written just after new year
        ("Jan  1 00:00:01", datetime(2027, 1, 1, 0, 5, tzinfo=UTC), 2027),
        ("Dec  2 16:27:33", datetime(2026, 12, 2, 16, 30, tzinfo=UTC), 2026),
        ("Dec  3 10:00:00", datetime(2026, 12, 2, 16, 30, tzinfo=UTC), 2026),  # a day ahead: clock skew
        ("Nov 20 10:00:00", datetime(2027, 3, 1, tzinfo=UTC), 2026),  # a long-lived file
        ("Mar  1 10:00:00", datetime(2027, 3, 1, 12, 0, tzinfo=UTC), 2027),
    ],
)
def test_year_is_inferred_from_the_reference_time(stamp: str, reference: datetime, expected_year: int) -> None:
    value = rfc3164_time(stamp, SourceContext(reference_time=reference))
    assert value is not None
    assert value.year == expected_year


def test_explicit_year_wins_over_inference() -> None:
    context = SourceContext(year=2020, reference_time=datetime(2027, 1, 1, tzinfo=UTC))
    assert rfc3164_time("Dec 31 23:59:59", context) == datetime(2020, 12, 31, 23, 59, 59, tzinfo=UTC)


def test_zone_applies_to_rfc3164_and_to_iso_without_offset() -> None:
    context = SourceContext(year=2026, tz=ZoneInfo("Europe/Berlin"))
    parser = SyslogParser(context)
    # 16:27:33 in Berlin in December (UTC+1) is 15:27:33 UTC; in July (UTC+2), 14:27:33 UTC.
    assert one_event(parser, LINE.format(stamp="Dec  2 16:27:33")).timestamp == datetime(
        2026, 12, 2, 15, 27, 33, tzinfo=UTC
    )
    assert one_event(parser, LINE.format(stamp="Jul  2 16:27:33")).timestamp == datetime(
        2026, 7, 2, 14, 27, 33, tzinfo=UTC
    )
    assert one_event(parser, LINE.format(stamp="2026-12-02T16:27:33")).timestamp == datetime(
        2026, 12, 2, 15, 27, 33, tzinfo=UTC
    )
    # An explicit offset is the line's own and wins over the context's zone.
    assert one_event(parser, LINE.format(stamp="2026-12-02T16:27:33Z")).timestamp == datetime(
        2026, 12, 2, 16, 27, 33, tzinfo=UTC
    )


def test_cached_timestamps_stay_per_parser() -> None:
    stamp = "Dec  2 16:27:33"
    utc = SyslogParser(SourceContext(year=2026))
    tokyo = SyslogParser(SourceContext(year=2026, tz=ZoneInfo("Asia/Tokyo")))
    first = one_event(utc, LINE.format(stamp=stamp)).timestamp
    assert one_event(utc, LINE.format(stamp=stamp)).timestamp == first
    assert one_event(tokyo, LINE.format(stamp=stamp)).timestamp == datetime(2026, 12, 2, 7, 27, 33, tzinfo=UTC)


@pytest.mark.parametrize("stamp", ["Feb 29 10:00:00", "Apr 31 10:00:00", "Dec  2 25:00:00", "Foo  2 10:00:00"])
def test_impossible_dates_are_reported_not_raised(stamp: str) -> None:
    parser = SyslogParser(SourceContext(year=2027))
    outcome = parser.feed(LINE.format(stamp=stamp))
    assert outcome == Unparsed("bad-timestamp")


def test_host_falls_back_to_the_context() -> None:
    parser = SyslogParser(SourceContext(host="from-context", year=2026))
    line = "<86>1 2026-12-02T16:27:37Z - sshd - - - Invalid user x from 192.0.2.9 port 2"
    event = one_event(parser, line)
    assert event.server_hostname == "from-context"
    assert event.details["host"] == {"hostname": "from-context"}
    assert one_event(parser, LINE.format(stamp="Dec  2 16:27:33")).server_hostname == "host1"


def test_sshd_format_reports_other_programs() -> None:
    parser = SshdParser(SourceContext(year=2026))
    assert parser.feed("Dec  2 16:27:33 h sudo[1]: alice : TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/id") == (
        Unparsed("not-sshd")
    )
    assert one_event(parser, "Dec  2 16:27:33 h sshd-session[1]: Accepted password for a from ::1 port 2 ssh2")


def test_key_makes_ids_deterministic_and_distinct_per_repeat() -> None:
    parser = SyslogParser(SourceContext(year=2026))
    line = (
        "Dec  2 16:27:33 h sshd[1]: message repeated 4 times: [ Failed password for root from 192.0.2.1 port 22 ssh2]"
    )
    first = parser.feed(line, key="auth.log:100")
    again = parser.feed(line, key="auth.log:100")
    other = parser.feed(line, key="auth.log:200")
    assert not isinstance(first, Unparsed)
    assert not isinstance(again, Unparsed)
    assert not isinstance(other, Unparsed)
    assert len(first) == 4
    assert [e.event_id for e in first] == [e.event_id for e in again]
    assert len({e.event_id for e in first} | {e.event_id for e in other}) == 8
    unkeyed = parser.feed(line)
    assert not isinstance(unkeyed, Unparsed)
    assert len({e.event_id for e in unkeyed}) == 4


def test_repeat_count_is_bounded() -> None:
    parser = SyslogParser(SourceContext(year=2026))
    line = "Dec  2 16:27:33 h sshd[1]: message repeated 999999999 times: [ Failed password for x from ::1 port 2 ssh2]"
    outcome = parser.feed(line, key="k")
    assert not isinstance(outcome, Unparsed)
    assert len(outcome) == 1000
