"""Assembly of audit records into events: when an event is emitted, how many are held, and the
value encodings of the audit log."""

from __future__ import annotations

from collections.abc import Sequence

from auditflow.model.event import Event
from auditflow.parsers.auditd import AuditdParser
from auditflow.parsers.base import SourceContext, Unparsed

SYSCALL = (
    "type=SYSCALL msg=audit(1733151042.309:{serial}): arch=c000003e syscall=257 success=yes exit=3 items=1 "
    'ppid=1 pid=20 auid=1000 uid=0 ses=7 comm="vi" exe="/usr/bin/vi" key="identity"'
)
PATH = 'type=PATH msg=audit(1733151042.309:{serial}): item=0 name="{name}" nametype=NORMAL'
EOE = "type=EOE msg=audit(1733151042.309:{serial}): "
USER_CMD = (
    "type=USER_CMD msg=audit(1733151042.400:{serial}): pid=30 uid=1000 auid=1000 ses=7 "
    'msg=\'cwd="/" cmd=6C73202D6C61 exe="/usr/bin/sudo" terminal=pts/0 res=success\''
)


def _resources(events: Sequence[Event] | Unparsed) -> list[str]:
    assert not isinstance(events, Unparsed)
    return [event.details["resource"] for event in events]


def test_without_eoe_records_a_new_serial_closes_the_event() -> None:
    # `ausearch --raw` and journald leave out EOE records
    parser = AuditdParser()
    assert parser.feed(SYSCALL.format(serial=1)) == []
    assert parser.feed(PATH.format(serial=1, name="/etc/shadow")) == []
    assert _resources(parser.feed(SYSCALL.format(serial=2))) == ["/etc/shadow"]
    assert parser.feed(PATH.format(serial=2, name="/etc/passwd")) == []
    assert _resources(parser.flush()) == ["/etc/passwd"]
    assert parser.flush() == []


def test_with_eoe_records_interleaved_events_are_assembled_and_the_eoe_emits() -> None:
    parser = AuditdParser()
    assert parser.feed(EOE.format(serial=99)) == []  # an EOE of nothing open only marks the input
    assert parser.feed(SYSCALL.format(serial=1)) == []
    assert parser.feed(SYSCALL.format(serial=2)) == []
    assert parser.feed(PATH.format(serial=2, name="/etc/passwd")) == []
    assert parser.feed(PATH.format(serial=1, name="/etc/shadow")) == []
    assert _resources(parser.feed(EOE.format(serial=2))) == ["/etc/passwd"]
    assert _resources(parser.feed(EOE.format(serial=1))) == ["/etc/shadow"]


def test_a_user_space_record_is_emitted_at_once_and_leaves_open_events_alone() -> None:
    parser = AuditdParser()
    parser.feed(EOE.format(serial=0))
    parser.feed(SYSCALL.format(serial=1))
    events = parser.feed(USER_CMD.format(serial=2))
    assert not isinstance(events, Unparsed)
    assert [(e.event_type, e.details["command"]) for e in events] == [("sudo_command", "ls -la")]
    parser.feed(PATH.format(serial=1, name="/etc/shadow"))
    assert _resources(parser.feed(EOE.format(serial=1))) == ["/etc/shadow"]


def test_open_events_are_bounded_and_the_oldest_is_emitted_first() -> None:
    parser = AuditdParser(max_open=2)
    parser.feed(EOE.format(serial=0))
    for serial in (1, 2):
        parser.feed(SYSCALL.format(serial=serial))
        parser.feed(PATH.format(serial=serial, name=f"/etc/f{serial}"))
    assert _resources(parser.feed(SYSCALL.format(serial=3))) == ["/etc/f1"]  # out when the third opened
    rest = parser.flush()
    assert [(e.event_type, e.details.get("resource")) for e in rest] == [
        ("file_modified", "/etc/f2"),
        ("audit_syscall", None),  # a keyed system call that touched no file
    ]


def test_records_of_different_nodes_with_one_serial_stay_apart() -> None:
    parser = AuditdParser(SourceContext(host="collector"))
    parser.feed("node=a " + EOE.format(serial=4))
    parser.feed("node=a " + SYSCALL.format(serial=5))
    parser.feed("node=b " + SYSCALL.format(serial=5))
    parser.feed("node=b " + PATH.format(serial=5, name="/etc/b"))
    parser.feed("node=a " + PATH.format(serial=5, name="/etc/a"))
    first, second = parser.feed("node=a " + EOE.format(serial=5)), parser.feed("node=b " + EOE.format(serial=5))
    assert not isinstance(first, Unparsed)
    assert not isinstance(second, Unparsed)
    events = [*first, *second]
    assert [(e.server_hostname, e.details["resource"]) for e in events] == [("a", "/etc/a"), ("b", "/etc/b")]


def test_execve_arguments_split_into_pieces_and_hex_are_joined() -> None:
    parser = AuditdParser()
    lines = [
        "type=SYSCALL msg=audit(1.000:9): arch=c000003e syscall=59 success=yes pid=4 auid=4294967295 uid=0"
        ' comm="sh" exe="/bin/sh" key=(null)',
        'type=EXECVE msg=audit(1.000:9): argc=3 a0="sh" a1="-c" a2_len=12 a2[0]=6563686F20 a2[1]=2268692229',
        "type=EOE msg=audit(1.000:9): ",
    ]
    for line in lines[:2]:
        assert parser.feed(line) == []
    outcome = parser.feed(lines[2])
    assert not isinstance(outcome, Unparsed)
    (event,) = outcome
    assert event.event_type == "process_started"
    assert event.details["process"]["args"] == ["sh", "-c", 'echo "hi")']
    assert event.user_id == "0"  # no login uid: the uid, as a number (the record names no account)
    assert "key" not in event.details["audit"]


def test_a_system_call_without_watched_file_is_an_audit_syscall_and_unknown_types_are_counted() -> None:
    parser = AuditdParser()
    parser.feed(
        "type=SYSCALL msg=audit(1.000:1): arch=c000003e syscall=2 success=no exit=-13 a0=7ffd1 a1=0 a2=1b6 a3=0"
        ' ppid=9 pid=10 auid=1000 uid=1000 euid=0 comm="cat" exe="/usr/bin/cat" key=(null)'
    )
    parser.feed('type=PATH msg=audit(1.000:1): item=0 name="/tmp/x" nametype=NORMAL')
    # without EOE records, the next serial closes the event
    closed = parser.feed("type=CRED_ACQ msg=audit(1.000:2): pid=1 uid=0 msg='op=PAM:setcred acct=\"root\" res=success'")
    assert not isinstance(closed, Unparsed)
    (event,) = closed
    assert event.event_type == "audit_syscall"
    audit = event.details["audit"]
    assert (audit["euid"], audit["a0"], audit["a2"], audit["exit"], audit["success"]) == (
        "0",
        "7ffd1",
        "1b6",
        "-13",
        False,
    )
    assert event.details["file"] == {"path": "/tmp/x"}  # no key: not a watched file, but the name is kept
    assert event.details["process"]["parent"] == {"pid": 9}
    assert parser.ignored == {"CRED_ACQ": 1}


def test_service_start_and_stop_records_are_service_state_changes() -> None:
    parser = AuditdParser()
    stop = (
        "type=SERVICE_STOP msg=audit(1733151050.120:88): pid=1 uid=0 auid=4294967295 ses=4294967295"
        ' msg=\'unit=firewalld comm="systemd" exe="/usr/lib/systemd/systemd" hostname=? addr=? terminal=? res={res}\''
    )
    stopped, failed = (
        parser.feed(stop.format(res="success")),
        parser.feed(stop.replace(":88)", ":89)").format(res="failed")),
    )
    assert not isinstance(stopped, Unparsed)
    assert not isinstance(failed, Unparsed)
    events = [*stopped, *failed]
    assert [(e.event_type, e.details["service"], e.details["state"], e.details["expected"]) for e in events] == [
        ("service_state_change", "firewalld", "stopped", True),
        ("service_state_change", "firewalld", "failed", False),
    ]
    assert events[0].details["audit"]["unit"] == "firewalld"


def test_lines_that_are_not_audit_records_say_why() -> None:
    parser = AuditdParser()
    assert parser.feed("hello") == Unparsed("auditd-no-header")
    assert parser.feed("type=X msg=audit(999999999999.000:1): a=b") == Unparsed("auditd-bad-timestamp")
    assert parser.feed("----") == []


def test_without_enriched_names_the_system_call_is_named_from_its_number() -> None:
    parser = AuditdParser()
    record = 'type=SYSCALL msg=audit(1.000:{serial}): arch={arch} syscall={number} success=yes exit=0 pid=5 key="k"'
    cases = [("c000003e", "319", "memfd_create"), ("c00000b7", "179", "sysinfo"), ("c000003e", "4000", "syscall")]
    events: list[Event] = []
    for serial, (arch, number, _) in enumerate(cases, 1):
        fed = parser.feed(record.format(serial=serial, arch=arch, number=number))
        assert not isinstance(fed, Unparsed)
        events.extend(fed)
    events.extend(parser.flush())
    assert [(e.event_type, e.details["event"]["action"]) for e in events] == [
        ("audit_syscall", name) for _, _, name in cases
    ]
    enriched = parser.feed(record.format(serial=9, arch="c000003e", number="319") + "\x1dSYSCALL=memfd_create")
    assert enriched == []
    assert [e.details["event"]["action"] for e in parser.flush()] == ["memfd_create"]


def test_a_connect_to_an_internet_address_is_a_network_connection() -> None:
    parser = AuditdParser()
    syscall = (
        "type=SYSCALL msg=audit(1733152400.{n:03d}:{n}): arch=c000003e syscall=42 success={ok} exit={exit} a0=3"
        ' a1=7ffc a2=10 a3=0 items=0 ppid=2311 pid=2600 auid=1000 uid=1000 euid=1000 comm="bash"'
        ' exe="/usr/bin/bash" key="network_connect_4"'
    )
    sockaddr = "type=SOCKADDR msg=audit(1733152400.{n:03d}:{n}): saddr={saddr}"
    cases = [
        (1, "yes", "0", "0200115CCB0071090000000000000000"),  # 203.0.113.9:4444
        (
            2,
            "no",
            "-115",
            "0A00115C0000000020010DB8000000000000000000000005" + "00000000",
        ),  # [2001:db8::5], in progress
        (3, "yes", "0", "01002F72756E2F646275732F73797374656D5F6275735F736F636B6574"),  # /run/dbus/...: a unix socket
    ]
    events: list[Event] = []
    for n, ok, exit_code, saddr in cases:
        for line in (syscall.format(n=n, ok=ok, exit=exit_code), sockaddr.format(n=n, saddr=saddr)):
            fed = parser.feed(line)
            assert not isinstance(fed, Unparsed)
            events.extend(fed)
    events.extend(parser.flush())
    assert [(e.event_type, e.details.get("destination"), e.action_result) for e in events] == [
        ("network_connection", {"ip": "203.0.113.9", "port": 4444}, "SUCCESS"),
        ("network_connection", {"ip": "2001:db8::5", "port": 4444}, "FAILURE"),
        ("audit_syscall", None, "SUCCESS"),
    ]
    assert events[0].details["network"] == {"initiated": True}
    assert events[0].details["event"]["action"] == "connect"
    assert events[1].details["audit"]["exit"] == "-115"  # EINPROGRESS: a non-blocking connect under way
