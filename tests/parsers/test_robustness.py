"""No input crashes a parser, and what it makes is always safe to store: arbitrary text and
bytes, NUL characters, undecodable bytes, and lines far longer than an event may hold."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from auditflow.model.event import MAX_DETAILS_BYTES, Event
from auditflow.parsers import emit
from auditflow.parsers.base import SourceContext, Unparsed
from auditflow.parsers.programs import PROGRAMS, parse_message
from auditflow.parsers.registry import FORMATS, create_parser

CONTEXT = SourceContext(host="h", reference_time=datetime(2026, 12, 2, tzinfo=UTC))
PROGRAM_NAMES = sorted(PROGRAMS)
# Fragments real lines are made of, so that generated lines reach the message parsers.
FRAGMENTS = [
    "Dec  2 16:27:33 host ",
    "2026-12-02T16:27:33.5+01:00 host ",
    "<86>1 2026-12-02T16:27:33Z host ",
    *(f"{name}[1]: " for name in PROGRAM_NAMES),
    "message repeated 3 times: [ ",
    "Failed password for ",
    "Accepted publickey for ",
    "invalid user ",
    "Invalid user ",
    " from ",
    " port 22",
    " ssh2",
    " [preauth]",
    "]",
    "pam_unix(sshd:auth): authentication failure; rhost=",
    "pam_unix(su:session): session opened for user ",
    " : TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=",
    "3 incorrect password attempts ; ",
    "(to root) ",
    "FAILED SU ",
    "new user: name=",
    "add 'bob' to group 'sudo'",
    "nginx.service: ",
    "Main process exited, code=killed, status=9/KILL",
    "Started x.service - y.",
    "\x00",
    "\udcff",
    "'",
    '"',
    "[",
    " ",
]
line_text = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=12)), max_size=14).map("".join)
# A valid header in front of a generated message, so that most examples reach a message parser.
HEADERS = ["Dec  2 16:27:33 host ", "2026-12-02T16:27:33.5+01:00 host ", "<86>1 2026-12-02T16:27:33Z host "]
headed_line = st.builds(
    lambda header, program, message: (
        f"{header}{program}[1]: {message}" if not header.startswith("<") else f"{header}{program} 1 - - {message}"
    ),
    st.sampled_from(HEADERS),
    st.sampled_from(PROGRAM_NAMES),
    line_text,
)


def check_outcome(outcome: object) -> None:
    if isinstance(outcome, Unparsed):
        assert outcome.reason
        return
    assert isinstance(outcome, (list, tuple))
    for event in outcome:
        assert isinstance(event, Event)
        data = orjson.dumps(event.model_dump(mode="json"))  # raises on lone surrogates
        assert b"\\u0000" not in data
        Event.model_validate_json(data)


@settings(max_examples=400, deadline=None)
@given(line=st.one_of(line_text, headed_line))
def test_any_text_line_is_parsed_or_reported(line: str) -> None:
    for fmt in FORMATS:
        parser = create_parser(fmt, CONTEXT)
        check_outcome(parser.feed(line, key="k"))
        check_outcome(parser.feed(line))


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300))
def test_any_bytes_decoded_as_a_source_would_never_raise(data: bytes) -> None:
    line = data.decode("utf-8", "surrogateescape")
    for fmt in FORMATS:
        check_outcome(create_parser(fmt, CONTEXT).feed(line, key="k"))


@settings(max_examples=200, deadline=None)
@given(program=st.sampled_from([*PROGRAM_NAMES, "unknown"]), message=line_text)
def test_parse_message_never_raises(program: str, message: str) -> None:
    outcome = parse_message(
        program,
        message,
        timestamp=datetime(2026, 12, 2, tzinfo=UTC),
        host=None,
        pid=None,
        raw=message,
        context=CONTEXT,
        key=None,
    )
    check_outcome(outcome)


def test_nul_characters_are_removed() -> None:
    line = "Dec  2 16:27:33 host sshd[1]: Failed password for ro\x00ot from 192.0.2.1 port 22 ssh2"
    outcome = create_parser("syslog", CONTEXT).feed(line)
    assert not isinstance(outcome, Unparsed)
    assert outcome[0].user_id == "root"
    assert "\x00" not in outcome[0].details["event"]["original"]


def test_undecodable_bytes_become_replacement_characters() -> None:
    raw = b"Dec  2 16:27:33 host sshd[1]: Invalid user b\xffd from 192.0.2.1 port 22"
    outcome = create_parser("syslog", CONTEXT).feed(raw.decode("utf-8", "surrogateescape"))
    assert not isinstance(outcome, Unparsed)
    assert outcome[0].user_id == "b\ufffdd"


def test_long_lines_fit_the_event_limits() -> None:
    user = "u" * 70_000
    command = "/bin/echo " + "\x01" * 40_000
    lines = [
        f"Dec  2 16:27:33 {'h' * 300} sshd[1]: Failed password for invalid user {user} from 192.0.2.1 port 22 ssh2",
        f"Dec  2 16:27:33 host sudo[1]: alice : TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND={command}",
    ]
    for line in lines:
        outcome = create_parser("syslog", CONTEXT).feed(line)
        assert not isinstance(outcome, Unparsed)
        (event,) = outcome
        Event.model_validate(event.model_dump())
        assert len(orjson.dumps(event.details)) <= MAX_DETAILS_BYTES
        assert event.details["event"]["truncated"] is True
    # Just short enough to skip the size check: the worst content still fits untouched.
    header = "Dec  2 16:27:33 host sudo[1]: alice : TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND="
    short = header + "\x01" * (emit._CHEAP_LINE - len(header))
    outcome = create_parser("syslog", CONTEXT).feed(short)
    assert not isinstance(outcome, Unparsed)
    assert len(orjson.dumps(outcome[0].details)) <= MAX_DETAILS_BYTES
    assert "truncated" not in outcome[0].details["event"]
    first = create_parser("syslog", CONTEXT).feed(lines[0])
    assert not isinstance(first, Unparsed)
    assert first[0].user_id == "u" * 255
    assert first[0].server_hostname == "h" * 255


def test_pathological_lines_parse_in_linear_time() -> None:
    # Repeated fragments that a backtracking pattern could try at every position.
    head = "Dec  2 16:27:33 h "
    lines = [
        head + "sshd[1]: Disconnected from user " + "a 1.2.3.4 port 1:x" * 3000 + "!",
        head + "sshd[1]: Failed password for " + "x from 1.2.3.4 port 1: " * 3000 + "!",
        head + "sshd[1]: Invalid user " + "x from 1.2.3.4 port 1 " * 3000 + "!",
        head + "sshd[1]: Received disconnect from 1.2.3.4 port 1:11: " + " [preauth]" * 6000 + "x",
        head + "sshd[1]: " + "[" * 60000 + "POSSIBLE BREAK-IN ATTEMPT!",
        head + "sshd[1]: pam_unix(sshd:auth): authentication failure; " + "a=b " * 20000,
        head + "sudo[1]: alice : " + "X ; " * 20000,
        head + "systemd[1]: Started " + "a.service - " * 5000 + ".service",
        "Dec  2 16:27:33 " + "h" * 60000,
        "<1>1 - - - - - " + "[a]" * 30000 + "x",
    ]
    parser = create_parser("syslog", CONTEXT)
    started = time.process_time()
    for line in lines:
        check_outcome(parser.feed(line))
    # Linear parsing takes milliseconds here; quadratic backtracking would take minutes.
    assert time.process_time() - started < 5.0
