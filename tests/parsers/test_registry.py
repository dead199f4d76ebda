"""The format table: parsers by name, detection for `--format auto`, and the program dispatch
that journald shares."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from auditflow.model.event import Event
from auditflow.parsers import emit
from auditflow.parsers.base import EVENT_ID_NAMESPACE, SourceContext, Unparsed, event_id_for
from auditflow.parsers.programs import parse_message
from auditflow.parsers.registry import FORMATS, create_parser, detect_format
from auditflow.parsers.syslog import SshdParser, SyslogParser

CONTEXT = SourceContext(year=2026)


def test_formats_create_their_parsers() -> None:
    assert {"syslog", "sshd"} <= set(FORMATS)
    assert isinstance(create_parser("syslog", CONTEXT), SyslogParser)
    assert isinstance(create_parser("sshd", CONTEXT), SshdParser)
    assert create_parser("sshd", CONTEXT).name == "sshd"


def test_unknown_format_is_named() -> None:
    with pytest.raises(ValueError, match=r"unknown log format 'nginx'; known formats: .*syslog"):
        create_parser("nginx", CONTEXT)


def test_detects_syslog_despite_some_noise() -> None:
    sample = [
        "Dec  2 16:27:33 h sshd[1]: Server listening on :: port 22.",
        "",
        "-- MARK --",
        "2026-12-02T16:27:33.1+00:00 h sudo[2]: alice : TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/id",
        "<86>1 2026-12-02T16:27:33Z h su - - - (to root) alice on pts/0",
    ]
    assert detect_format(sample) == "syslog"


@pytest.mark.parametrize(
    ("sample", "message"),
    [
        (['{"kind": "Event"}', "plain words"], r"cannot detect the log format of 2 sample line\(s\) \(first: '\{"),
        (["", "  "], "no non-blank line"),
    ],
)
def test_detection_failure_says_what_it_saw(sample: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        detect_format(sample)


def test_parse_message_is_the_shared_dispatch() -> None:
    when = datetime(2026, 12, 2, 16, 27, 33, 123456, tzinfo=UTC)
    outcome = parse_message(
        "sshd",
        "Accepted publickey for alice from 192.0.2.1 port 2222 ssh2: ED25519 SHA256:x",
        timestamp=when,
        host="journal-host",
        pid=42,
        raw='{"MESSAGE": "Accepted publickey ..."}',
        context=CONTEXT,
        key="journal:cursor-1",
    )
    assert not isinstance(outcome, Unparsed)
    (event,) = outcome
    assert event.event_type == "user_login"
    assert event.action_result == "SUCCESS"
    assert event.timestamp == datetime(2026, 12, 2, 16, 27, 33, 123000, tzinfo=UTC)
    assert event.event_id == event_id_for("journal:cursor-1", 0)
    assert event.server_hostname == "journal-host"
    assert event.details["process"] == {"name": "sshd", "pid": 42}
    assert event.details["event"]["original"] == '{"MESSAGE": "Accepted publickey ..."}'
    assert event.details["source"] == {"ip": "192.0.2.1", "port": 2222}
    # a program without a parser: one generic event, its text searchable, named in lower case
    generic = parse_message(
        "CRON",
        "(root) CMD (run-parts /etc/cron.hourly)",
        timestamp=when,
        host="web1",
        pid=7,
        raw="raw",
        context=CONTEXT,
        key=None,
    )
    assert not isinstance(generic, Unparsed)
    (event,) = generic
    assert (event.event_type, event.source_service, event.server_hostname) == ("syslog_message", "cron", "web1")
    assert event.details["event"] == {"original": "raw", "action": "message", "outcome": "unknown", "dataset": "cron"}
    assert event.details["message"] == "(root) CMD (run-parts /etc/cron.hourly)"
    assert event.details["process"] == {"name": "CRON", "pid": 7}


def test_event_ids_are_uuid5_of_key_and_index() -> None:
    for key, index in [("auth.log:0", 0), ("inode:42:offset:981", 3), ("é", 10)]:
        assert event_id_for(key, index) == uuid.uuid5(EVENT_ID_NAMESPACE, f"{key}#{index}")


def test_events_are_built_like_model_construct() -> None:
    assert emit.construct_event is emit._construct_directly  # the fast path is in use with this pydantic
    assert emit._direct_construction_works()
    parser = create_parser("syslog", CONTEXT)
    outcome = parser.feed("Dec  2 16:27:33 h sshd[1]: Invalid user x from 192.0.2.9 port 2", key="k")
    assert not isinstance(outcome, Unparsed)
    (event,) = outcome
    rebuilt = Event.model_construct(**dict(event))
    assert event == rebuilt
    assert event.model_dump_json() == rebuilt.model_dump_json()
    assert event.model_copy(update={"user_id": "y"}).user_id == "y"
