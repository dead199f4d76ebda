"""Lines of programs without a parser, and messages a parser does not know, are generic
`syslog_message` events, from syslog files, the journal and the syslog receiver alike; a line sent
without a host is still told apart and read without one."""

from __future__ import annotations

import json

from auditflow.parsers.base import Unparsed
from auditflow.parsers.journald import JournaldParser
from auditflow.parsers.syslog import SshdParser, SyslogParser
from auditflow.sources.syslog_intake import SyslogDecoder


def test_a_program_without_a_parser_and_an_unknown_message_are_generic_events() -> None:
    parser = SyslogParser()
    lines = [
        "Dec  3 04:10:11 files1 vsftpd[2211]: Connection refused: too many sessions for this address.",
        "Dec  3 04:10:12 files1 sshd[4410]: Corrupted MAC on input. [preauth]",
        "Dec  3 04:10:13 files1 sshd[4411]: Server listening on 0.0.0.0 port 22.",  # understood: no event
    ]
    outcomes = [parser.feed(line) for line in lines]
    assert not any(isinstance(outcome, Unparsed) for outcome in outcomes)
    events = [event for outcome in outcomes if not isinstance(outcome, Unparsed) for event in outcome]
    assert [(e.event_type, e.source_service, e.details["event"]["dataset"], e.details["message"]) for e in events] == [
        ("syslog_message", "vsftpd", "vsftpd", "Connection refused: too many sessions for this address."),
        ("syslog_message", "sshd", "sshd", "Corrupted MAC on input. [preauth]"),
    ]
    # the sshd format keeps only sshd, unknown messages of sshd included
    sshd_only = SshdParser()
    assert sshd_only.feed(lines[0]) == Unparsed("not-sshd")
    unknown = sshd_only.feed(lines[1])
    assert not isinstance(unknown, Unparsed)
    assert [e.event_type for e in unknown] == ["syslog_message"]


def test_journal_entries_of_programs_without_a_parser_are_generic_events() -> None:
    entry = {
        "__REALTIME_TIMESTAMP": "1733199011000000",
        "_HOSTNAME": "files1",
        "SYSLOG_IDENTIFIER": "CRON",
        "_PID": "8812",
        "MESSAGE": "(root) CMD (run-parts /etc/cron.hourly)",
    }
    outcome = JournaldParser().feed(json.dumps(entry))
    assert not isinstance(outcome, Unparsed)
    [event] = outcome
    assert (event.event_type, event.source_service, event.server_hostname) == ("syslog_message", "cron", "files1")


def test_a_line_without_a_host_is_left_to_the_receiver_which_reads_it_without_one() -> None:
    pam = "<86>Dec  3 04:10:11 sshd[42]: pam_unix(sshd:session): session opened for user root(uid=0) by (uid=0)"
    assert SyslogParser().feed(pam) == Unparsed("unknown-program")  # `sshd[42]:` read as the host
    decoder = SyslogDecoder()
    [session] = decoder.decode(pam.encode(), "udp")
    assert (session.event_type, session.source_service, session.server_hostname) == ("user_session", "sshd", None)
    [cron] = decoder.decode(b"<78>Dec  3 04:10:12 cron[7]: (root) CMD (run-parts /etc/cron.hourly)", "udp")
    assert (cron.event_type, cron.source_service, cron.server_hostname) == ("syslog_message", "cron", None)
