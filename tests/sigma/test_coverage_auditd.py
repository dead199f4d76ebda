"""Kinds of SigmaHQ auditd and network rules that convert since the auditd parser keeps more: each
rule is written for the project the way those rules are written, converted, and run over events
the real parser made from realistic audit records. It must fire on the record it describes and
stay quiet on a near miss."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from auditflow.backends.state import WindowState
from auditflow.parsers.auditd import AuditdParser
from auditflow.parsers.base import Unparsed
from tests.sigma.helpers import auditd_rule, convert_one, fired_on, parsed, unsupported_reason

ENRICHED = "\x1d"


def execve(serial: int, *args: str) -> list[str]:
    quoted = " ".join(f'a{n}="{arg}"' for n, arg in enumerate(args))
    stamp = f"1733152000.{serial:03d}:{7000 + serial}"
    return [
        f"type=SYSCALL msg=audit({stamp}): arch=c000003e syscall=59 success=yes exit=0 a0=55d1 a1=55d2 a2=55d3"
        f" a3=8 items=2 ppid=2311 pid={3000 + serial} auid=1000 uid=1000 gid=1000 euid=1000 suid=1000 fsuid=1000"
        f' egid=1000 sgid=1000 fsgid=1000 tty=pts0 ses=7 comm="{args[0]}" exe="/usr/bin/{args[0]}" key="exec"'
        f'{ENRICHED}ARCH=x86_64 SYSCALL=execve AUID="alice" UID="alice"',
        f"type=EXECVE msg=audit({stamp}): argc={len(args)} {quoted}",
        f'type=CWD msg=audit({stamp}): cwd="/home/alice"',
        f"type=EOE msg=audit({stamp}): ",
    ]


async def test_a_regular_expression_on_an_execve_argument(tmp_path: Path, state: WindowState) -> None:
    rule = convert_one(
        tmp_path,
        auditd_rule(
            "detection:\n  selection:\n    type: EXECVE\n    a0: [touch, mkdir]\n"
            "    a1|re: '^\\.[^./]'\n  condition: selection\n"
        ),
    )
    events = parsed(
        AuditdParser(),
        *execve(1, "touch", ".cache-x"),
        *execve(2, "touch", "notes.txt"),  # near miss: not hidden
        *execve(3, "touch", "-d", ".stamp"),  # near miss: the hidden name is the third argument
        *execve(4, "mkdir", "../up"),  # near miss: a relative path, not a dot file
    )
    assert [e.details["process"]["command_line"] for e in await fired_on(state, rule, events)] == ["touch .cache-x"]


async def test_the_nametype_of_a_created_file(tmp_path: Path, state: WindowState) -> None:
    rule = convert_one(
        tmp_path,
        auditd_rule(
            "detection:\n  created:\n    type: PATH\n    nametype: CREATE\n"
            "  unit_dirs:\n    name|startswith: [/etc/systemd/system/, /usr/lib/systemd/system/]\n"
            "  condition: created and unit_dirs\n"
        ),
    )

    def creat(serial: int, name: str, nametype: str) -> list[str]:
        stamp = f"1733152100.{serial:03d}:{7100 + serial}"
        return [
            f"type=SYSCALL msg=audit({stamp}): arch=c000003e syscall=257 success=yes exit=3 a0=ffffff9c"
            f' a1=7ffe a2=241 a3=1a4 items=2 ppid=1 pid={4000 + serial} auid=1000 uid=0 euid=0 ses=7 comm="tee"'
            f' exe="/usr/bin/tee" key="systemd"{ENRICHED}ARCH=x86_64 SYSCALL=openat',
            f'type=CWD msg=audit({stamp}): cwd="/root"',
            f'type=PATH msg=audit({stamp}): item=0 name="/etc/systemd/system/" inode=12 nametype=PARENT',
            f'type=PATH msg=audit({stamp}): item=1 name="{name}" inode=13 nametype={nametype}',
            f"type=EOE msg=audit({stamp}): ",
        ]

    events = parsed(
        AuditdParser(),
        *creat(1, "/etc/systemd/system/backdoor.service", "CREATE"),
        *creat(2, "/etc/systemd/system/sshd.service", "NORMAL"),  # near miss: an existing unit rewritten
    )
    assert [e.details["file"]["path"] for e in await fired_on(state, rule, events)] == [
        "/etc/systemd/system/backdoor.service"
    ]


async def test_a_stopped_service_by_its_unit(tmp_path: Path, state: WindowState) -> None:
    rule = convert_one(
        tmp_path,
        auditd_rule(
            "detection:\n  selection:\n    type: SERVICE_STOP\n    unit: [firewalld, ufw]\n  condition: selection\n"
        ),
    )
    record = (
        "type={type} msg=audit(1733152200.{serial:03d}:{serial}): pid=1 uid=0 auid=4294967295 ses=4294967295"
        ' subj=system_u:system_r:init_t:s0 msg=\'unit={unit} comm="systemd" exe="/usr/lib/systemd/systemd"'
        " hostname=? addr=? terminal=? res=success'"
    )
    events = parsed(
        AuditdParser(),
        record.format(type="SERVICE_STOP", serial=1, unit="firewalld"),
        record.format(type="SERVICE_START", serial=2, unit="firewalld"),  # near miss: started again
        record.format(type="SERVICE_STOP", serial=3, unit="nginx"),  # near miss: another unit
    )
    assert [(e.details["audit"]["serial"], e.details["state"]) for e in await fired_on(state, rule, events)] == [
        (1, "stopped")
    ]


async def test_the_effective_uid_of_a_system_call(tmp_path: Path, state: WindowState) -> None:
    rule = convert_one(
        tmp_path,
        auditd_rule(
            "detection:\n  selection:\n    type: SYSCALL\n    SYSCALL: [execve, execveat]\n    euid: 33\n"
            "  condition: selection\n"
        ),
    )
    www = execve(1, "id")
    www[0] = www[0].replace("euid=1000", "euid=33")
    events = parsed(AuditdParser(), *www, *execve(2, "id"))  # the second: alice's own euid
    assert [e.details["audit"]["euid"] for e in await fired_on(state, rule, events)] == ["33"]


async def test_a_system_call_argument_and_a_syscall_without_file(tmp_path: Path, state: WindowState) -> None:
    rule = convert_one(
        tmp_path,
        auditd_rule(
            "detection:\n  selection:\n    type: SYSCALL\n    SYSCALL: syslog\n    a0: [4, 5]\n  condition: selection\n"
        ),
    )

    def klogctl(serial: int, action: int) -> list[str]:
        stamp = f"1733152300.{serial:03d}:{7300 + serial}"
        return [
            f"type=SYSCALL msg=audit({stamp}): arch=c000003e syscall=103 success=yes exit=0 a0={action} a1=0"
            f' a2=0 a3=0 items=0 ppid=1 pid={5000 + serial} auid=1000 uid=0 euid=0 ses=7 comm="dmesg"'
            f' exe="/usr/bin/dmesg" key="clear_dmesg"{ENRICHED}ARCH=x86_64 SYSCALL=syslog',
            f"type=PROCTITLE msg=audit({stamp}): proctitle=646D657367002D43",
            f"type=EOE msg=audit({stamp}): ",
        ]

    events = parsed(AuditdParser(), *klogctl(1, 5), *klogctl(2, 3))  # 3 reads the buffer: a near miss
    assert [e.event_type for e in events] == ["audit_syscall", "audit_syscall"]
    assert [e.details["audit"]["a0"] for e in await fired_on(state, rule, events)] == ["5"]


async def test_network_connections_from_audited_connect_calls(tmp_path: Path, state: WindowState) -> None:
    text = """title: Outbound connection to a callback port
id: 7a2b3c4d-0000-4000-8000-000000000042
status: test
level: high
logsource: {product: linux, category: network_connection}
detection:
  selection:
    Initiated: 'true'
    DestinationPort: [4444, 50501]
  private:
    DestinationIp|cidr: [10.0.0.0/8, 127.0.0.0/8, 'fc00::/7']
  condition: selection and not private
"""
    rule = convert_one(tmp_path, text)

    def connect(serial: int, saddr: str) -> list[str]:
        stamp = f"1733152500.{serial:03d}:{7500 + serial}"
        return [
            f"type=SYSCALL msg=audit({stamp}): arch=c000003e syscall=42 success=yes exit=0 a0=3 a1=7ffc a2=10"
            f' a3=0 items=0 ppid=2311 pid={6000 + serial} auid=1000 uid=1000 euid=1000 comm="bash"'
            f' exe="/usr/bin/bash" key="network_connect_4"',
            f"type=SOCKADDR msg=audit({stamp}): saddr={saddr}",
            f"type=EOE msg=audit({stamp}): ",
        ]

    events = parsed(
        AuditdParser(),
        *connect(1, "0200115CCB0071090000000000000000"),  # 203.0.113.9:4444
        *connect(2, "0200115C0A0102030000000000000000"),  # near miss: 10.1.2.3:4444, a private address
        *connect(3, "020001BBCB0071090000000000000000"),  # near miss: 203.0.113.9:443
    )
    assert [e.details["destination"] for e in await fired_on(state, rule, events)] == [
        {"ip": "203.0.113.9", "port": 4444}
    ]


def test_every_auditd_field_the_mapping_names_is_one_the_parser_sets() -> None:
    """A mapped field the parser never fills would make rules that convert and never fire."""
    from auditflow.rules.sigma.logsources import resolve

    golden = Path(__file__).parent.parent / "parsers" / "golden" / "auditd.log"
    parser = AuditdParser()
    outcomes = [parser.feed(line) for line in golden.read_text(encoding="utf-8").split("\n")]
    events = [e for outcome in outcomes if not isinstance(outcome, Unparsed) for e in outcome]
    events.extend(parser.flush())
    source = resolve("linux", None, "auditd")
    missing = [
        name
        for name in source.fields
        if not any(event.field_value(path) is not None for path in source.targets(name) for event in events)
    ]
    assert missing == []


def test_the_record_type_of_a_selection_says_whose_arguments_a0_names(tmp_path: Path) -> None:
    def paths(where: Any) -> set[str]:
        if isinstance(where, dict):
            return {k for k in where if k.startswith("details.audit.")} | {p for v in where.values() for p in paths(v)}
        if isinstance(where, list):
            return {p for item in where for p in paths(item)}
        return set()

    execve = convert_one(
        tmp_path / "e", auditd_rule("detection:\n  s:\n    type: EXECVE\n    a0: chattr\n  condition: s\n", serial=1)
    )
    syscall = convert_one(
        tmp_path / "s", auditd_rule("detection:\n  s:\n    type: SYSCALL\n    a0: 4\n  condition: s\n", serial=2)
    )
    either = convert_one(tmp_path / "n", auditd_rule("detection:\n  s:\n    a1: '-i'\n  condition: s\n", serial=3))
    assert paths(execve["where"]) == {"details.audit.records", "details.audit.execve.a0"}
    assert paths(syscall["where"]) == {"details.audit.records", "details.audit.a0"}
    assert paths(either["where"]) == {"details.audit.execve.a1", "details.audit.a1"}
    reason = unsupported_reason(
        tmp_path / "u", auditd_rule("detection:\n  s:\n    type: SYSCALL\n    a5: 1\n  condition: s\n", serial=4)
    )
    assert reason == "field 'a5': a SYSCALL record has the arguments a0 to a3"
