"""No input may crash a structured parser: arbitrary text, and text shaped like each format, gives
events that pass the model's own validation or an `Unparsed` reason."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auditflow.model.event import MAX_DETAILS_BYTES, Event
from auditflow.parsers.auditd import AuditdParser
from auditflow.parsers.base import LogParser, Unparsed
from auditflow.parsers.journald import JournaldParser
from auditflow.parsers.k8s_audit import K8sAuditParser

PARSERS = (AuditdParser, JournaldParser, K8sAuditParser)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check(outcome: Sequence[Event] | Unparsed) -> None:
    if isinstance(outcome, Unparsed):
        assert outcome.reason
        return
    for event in outcome:
        # the parsers build events unvalidated: the model must accept each one as it is
        Event.model_validate(event.model_dump())
        assert len(orjson.dumps(event.details)) <= MAX_DETAILS_BYTES
        assert "original" in event.details["event"]


def _feed_all(parser: LogParser, lines: list[str]) -> None:
    for number, line in enumerate(lines):
        _check(parser.feed(line, key=f"fuzz:{number}"))
    _check(parser.flush())


@SETTINGS
@given(st.lists(st.text(), max_size=8))
def test_arbitrary_text_never_raises(lines: list[str]) -> None:
    for make in PARSERS:
        _feed_all(make(), lines)


@SETTINGS
@given(st.lists(st.binary(max_size=200), max_size=8))
def test_arbitrary_bytes_read_as_a_file_never_raise(chunks: list[bytes]) -> None:
    # what a source hands over for undecodable bytes: surrogate escapes
    lines = [chunk.decode("utf-8", "surrogateescape") for chunk in chunks]
    for make in PARSERS:
        _feed_all(make(), lines)


_AUDIT_TYPES = st.sampled_from(
    [
        "SYSCALL",
        "PATH",
        "CWD",
        "EXECVE",
        "EOE",
        "USER_AUTH",
        "USER_LOGIN",
        "USER_CMD",
        "ADD_USER",
        "DEL_USER",
        "PROCTITLE",
    ]
)
_FIELD_NAMES = st.sampled_from(
    [
        "acct",
        "cmd",
        "exe",
        "comm",
        "key",
        "name",
        "nametype",
        "cwd",
        "a0",
        "a1[0]",
        "a1[1]",
        "auid",
        "uid",
        "pid",
        "ppid",
        "res",
        "success",
        "addr",
        "op",
        "id",
        "msg",
        "AUID",
        "ID",
    ]
)
_VALUES = st.one_of(
    st.text(max_size=20).map(lambda v: f'"{v}"'),
    st.text(max_size=20).map(lambda v: f"'{v}'"),
    st.binary(max_size=20).map(lambda b: b.hex().upper()),
    st.sampled_from(
        [
            "(null)",
            "?",
            "PARENT",
            "DELETE",
            "4294967295",
            "yes",
            "failed",
            "-1",
            "99999999999999999999",
            "\u00b9",
            "\u0663",
            "1\u00b2",
        ]
    ),
    st.text(alphabet=st.characters(blacklist_characters=" \n"), max_size=12),
)


@st.composite
def _audit_lines(draw: st.DrawFn) -> str:
    node = draw(st.one_of(st.none(), st.text(alphabet="abc01", min_size=1, max_size=4)))
    stamp = f"{draw(st.integers(0, 10**12))}.{draw(st.integers(0, 999)):03d}:{draw(st.integers(0, 5))}"
    fields = " ".join(f"{n}={v}" for n, v in draw(st.lists(st.tuples(_FIELD_NAMES, _VALUES), max_size=10)))
    prefix = f"node={node} " if node else ""
    tail = draw(st.one_of(st.just(""), st.text(max_size=20).map(lambda t: "\x1d" + t)))
    return f"{prefix}type={draw(_AUDIT_TYPES)} msg=audit({stamp}): {fields}{tail}"


@SETTINGS
@given(st.lists(_audit_lines(), max_size=12), st.integers(1, 4))
def test_audit_shaped_lines_never_raise(lines: list[str], max_open: int) -> None:
    _feed_all(AuditdParser(max_open=max_open), lines)


_JSON = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=False), st.text(max_size=20)
    ),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
_K8S_KEYS = [
    "kind",
    "apiVersion",
    "stage",
    "stageTimestamp",
    "requestReceivedTimestamp",
    "user",
    "verb",
    "sourceIPs",
    "responseStatus",
    "impersonatedUser",
    "userAgent",
    "requestURI",
    "objectRef",
]
_JOURNAL_KEYS = [
    "MESSAGE",
    "_TRANSPORT",
    "__REALTIME_TIMESTAMP",
    "_SOURCE_REALTIME_TIMESTAMP",
    "SYSLOG_IDENTIFIER",
    "_COMM",
    "_HOSTNAME",
    "_PID",
    "_AUDIT_ID",
]
_K8S_VALUES = {
    "kind": st.just("Event"),
    "apiVersion": st.just("audit.k8s.io/v1"),
    "stage": st.sampled_from(["ResponseComplete", "Panic", "RequestReceived", "x"]),
    "stageTimestamp": st.sampled_from(
        ["2024-12-02T14:47:33.1Z", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-05:00", "nope"]
    ),
}
_JOURNAL_VALUES = {
    "_TRANSPORT": st.sampled_from(["audit", "syslog", "journal"]),
    "__REALTIME_TIMESTAMP": st.sampled_from(["1733150853123456", "0", "999999999999999999", "x"]),
    "_SOURCE_REALTIME_TIMESTAMP": st.sampled_from(["1733150853123000", "1"]),
    "SYSLOG_IDENTIFIER": st.sampled_from(["sshd", "sudo", "audit"]),
    "_AUDIT_ID": st.sampled_from(["1", "2", "x"]),
    "MESSAGE": st.one_of(
        st.text(max_size=60),
        st.lists(st.integers(-1, 300), max_size=20),
        st.sampled_from(
            [
                'SYSCALL key="k" success=yes',
                'PATH name="f"',
                "USER_AUTH msg='acct=\"a\" res=failed'",
                "Failed password for a from 1.2.3.4 port 1 ssh2",
            ]
        ),
    ),
}


def _objects(
    keys: list[str], values: Mapping[str, st.SearchStrategy[object]], required: tuple[str, ...]
) -> st.SearchStrategy[str]:
    # the keys a parser checks first are usually present, so that the later paths are reached
    entry = st.fixed_dictionaries(
        {k: values[k] for k in required}, optional={k: values.get(k, _JSON) for k in keys if k not in required}
    )
    return entry.map(lambda d: orjson.dumps(d).decode())


@SETTINGS
@given(st.lists(_objects(_K8S_KEYS, _K8S_VALUES, ("kind", "apiVersion")), max_size=6))
def test_k8s_shaped_lines_never_raise(lines: list[str]) -> None:
    _feed_all(K8sAuditParser(), lines)


@SETTINGS
@given(st.lists(_objects(_JOURNAL_KEYS, _JOURNAL_VALUES, ("MESSAGE",)), max_size=8))
def test_journal_shaped_lines_never_raise(lines: list[str]) -> None:
    _feed_all(JournaldParser(), lines)
