"""The shipped rule pack: it loads cleanly, and each rule fires on a realistic event and not on a benign one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from auditflow.backends.state import WindowState, create_state
from auditflow.model import Event
from auditflow.rules import Detector, RuleSet, check_files, load_rules
from auditflow.rules.loader import DEFAULT_RULES_DIR

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def event(event_type: str, at: float = 0, **fields: Any) -> Event:
    fields.setdefault("user_id", "alice")
    fields.setdefault("server_hostname", "web-1")
    return Event(event_type=event_type, timestamp=T0 + timedelta(seconds=at), **fields)


def logins(*results: str) -> list[Event]:
    return [event("user_login", i, action_result=result) for i, result in enumerate(results)]


def sudo(command: str) -> list[Event]:
    return [event("sudo_command", details={"command": command})]


def created(groups: Any) -> list[Event]:
    return [event("user_created", details={"new_user": "eve", "groups": groups})]


def service(state: str, expected: Any = None) -> list[Event]:
    details = {"service": "auditd", "state": state}
    if expected is not None:
        details["expected"] = expected
    return [event("service_state_change", details=details)]


def file(path: str) -> list[Event]:
    return [event("file_modified", details={"resource": path, "action": "write"})]


FIRES: list[tuple[str, list[Event]]] = [
    ("failed-login-burst", logins("FAILURE", "FAILURE", "FAILURE")),
    ("login-after-failure-burst", logins("FAILURE", "FAILURE", "FAILURE", "SUCCESS")),
    ("sensitive-file-modified", file("/etc/shadow")),
    ("sensitive-file-modified", file("/etc/sudoers.d/90-cloud-init-users")),
    ("sensitive-file-modified", file("/root/.ssh/authorized_keys")),
    ("dangerous-sudo-command", sudo("rm -rf /")),
    ("dangerous-sudo-command", sudo("rm -rf --no-preserve-root /")),
    ("dangerous-sudo-command", sudo("rm -rf /var/lib/postgresql")),
    ("dangerous-sudo-command", sudo("rm -fr /etc")),
    ("dangerous-sudo-command", sudo("rm -rf /home/*")),
    ("dangerous-sudo-command", sudo("chmod 777 /")),
    ("dangerous-sudo-command", sudo("chmod -R 0777 /etc")),
    ("dangerous-sudo-command", sudo("chown root:root /tmp/backdoor")),
    ("dangerous-sudo-command", sudo("usermod -aG sudo eve")),
    ("dangerous-sudo-command", sudo("usermod -a -G docker,wheel eve")),
    ("dangerous-sudo-command", sudo("visudo")),
    ("dangerous-sudo-command", sudo("passwd root")),
    ("dangerous-sudo-command", sudo("setenforce 0")),
    ("dangerous-sudo-command", sudo("iptables -F")),
    ("dangerous-sudo-command", sudo("dd if=/dev/zero of=/dev/sda bs=1M")),
    ("privileged-account-created", created(["users", "sudo"])),
    ("privileged-account-created", created("users,wheel")),
    ("privileged-account-created", [event("account_created", details={"new_user": "x", "groups": ["admin"]})]),
    (
        "privileged-group-member-added",
        [event("group_modified", details={"group": "sudo", "action": "add", "member": "eve"})],
    ),
    ("service-stopped-unexpectedly", service("stopped")),
    ("service-stopped-unexpectedly", service("failed", expected=False)),
    ("service-stopped-unexpectedly", [event("service_stopped", details={"service": "sshd", "state": "stopped"})]),
]

BENIGN: list[tuple[str, list[Event]]] = [
    ("failed-login-burst", logins("FAILURE", "FAILURE", "SUCCESS")),
    ("failed-login-burst", [event("user_login", i * 40, action_result="FAILURE") for i in range(3)]),
    ("login-after-failure-burst", logins("FAILURE", "FAILURE", "SUCCESS")),
    ("login-after-failure-burst", logins("SUCCESS", "FAILURE", "FAILURE", "FAILURE")),
    ("sensitive-file-modified", file("/tmp/notes.txt")),
    ("sensitive-file-modified", file("/etc/sudoers.bak")),
    ("sensitive-file-modified", file("/etc/shadow-")),
    ("dangerous-sudo-command", sudo("rm -rf /tmp/build")),
    ("dangerous-sudo-command", sudo("rm -rf /home/alice/build")),
    ("dangerous-sudo-command", sudo("rm -rf /etcetera")),
    ("dangerous-sudo-command", sudo("chmod 755 /usr/local/bin/tool")),
    ("dangerous-sudo-command", sudo("chown www-data /var/www")),
    ("dangerous-sudo-command", sudo("usermod -aG docker eve")),
    ("dangerous-sudo-command", sudo("passwd alice")),
    ("dangerous-sudo-command", sudo("iptables -L")),
    ("dangerous-sudo-command", sudo("dd if=/dev/sda of=/backup/disk.img")),
    ("dangerous-sudo-command", sudo("systemctl restart nginx")),
    ("privileged-account-created", created(["users", "docker"])),
    ("privileged-account-created", created("sudoers-readers")),
    (
        "privileged-group-member-added",
        [event("group_modified", details={"group": "sudo", "action": "remove", "member": "eve"})],
    ),
    ("service-stopped-unexpectedly", service("stopped", expected=True)),
    ("service-stopped-unexpectedly", service("running")),
]


@pytest.fixture(scope="module")
def pack() -> RuleSet:
    return load_rules(None)


@pytest.fixture
async def state() -> AsyncIterator[WindowState]:
    async with create_state("memory://") as window_state:
        yield window_state


def test_the_pack_loads_cleanly_with_the_rules_the_issue_asks_for(pack: RuleSet) -> None:
    assert check_files([DEFAULT_RULES_DIR]) == []
    burst = pack.by_id["failed-login-burst"]
    assert burst.kind == "threshold"
    assert (burst.severity, burst.count, burst.window, burst.group_by) == (
        "ERROR",
        3,
        timedelta(seconds=60),
        ("user_id", "server_hostname"),
    )
    assert pack.by_id["sensitive-file-modified"].severity == "CRITICAL"
    assert pack.by_id["login-after-failure-burst"].kind == "sequence"
    assert not pack.unpinned  # every shipped rule is indexed by event type


def test_every_shipped_rule_has_positive_and_negative_cases(pack: RuleSet) -> None:
    ids = {rule.id for rule in pack.rules}
    assert {rule_id for rule_id, _ in FIRES} == ids
    assert {rule_id for rule_id, _ in BENIGN} == ids


@pytest.mark.parametrize(("rule_id", "events"), FIRES, ids=[f"{r}-{i}" for i, (r, _) in enumerate(FIRES)])
async def test_rule_fires(pack: RuleSet, state: WindowState, rule_id: str, events: list[Event]) -> None:
    alerts = [alert for alert in await Detector(state, lambda: pack).process(events) if alert.rule_id == rule_id]
    assert len(alerts) == 1
    assert alerts[0].description
    assert "{" not in alerts[0].description


@pytest.mark.parametrize(("rule_id", "events"), BENIGN, ids=[f"{r}-{i}" for i, (r, _) in enumerate(BENIGN)])
async def test_rule_stays_quiet(pack: RuleSet, state: WindowState, rule_id: str, events: list[Event]) -> None:
    alerts = await Detector(state, lambda: pack).process(events)
    assert rule_id not in [alert.rule_id for alert in alerts]


async def test_descriptions_name_the_subject(pack: RuleSet, state: WindowState) -> None:
    detector = Detector(state, lambda: pack)
    [burst] = await detector.process(logins("FAILURE", "FAILURE", "FAILURE"))
    assert burst.description == "3 failed logins for user alice on web-1 within 1m"
    [shadow] = await detector.process(file("/etc/shadow"))
    assert shadow.description == "/etc/shadow modified on web-1 by alice"
    assert shadow.group == {"server_hostname": "web-1", "details.resource": "/etc/shadow"}
