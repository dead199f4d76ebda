"""The shipped rule pack: it loads cleanly, and each rule fires on a realistic event and not on a benign one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from auditflow.backends.state import WindowState, create_state
from auditflow.model import Event
from auditflow.parsers.base import SourceContext, Unparsed
from auditflow.parsers.registry import create_parser
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


def from_log(text: str, fmt: str = "syslog") -> list[Event]:
    """The events a log parser makes of `text`, as the daemons write it."""
    parser = create_parser(fmt, SourceContext(year=2026))
    events: list[Event] = []
    # Split on newlines only: enriched auditd records hold a \x1d, which splitlines() breaks at.
    for number, line in enumerate(text.strip().split("\n")):
        outcome = parser.feed(line, key=f"sample:{number}")
        assert not isinstance(outcome, Unparsed), line
        events.extend(outcome)
    events.extend(parser.flush())
    return events


def ssh_failures(ip: str, count: int, *, start: int = 0, user: str = "root") -> str:
    return "\n".join(
        f"Mar  1 12:00:{start + i:02d} web-1 sshd[{900 + i}]: "
        f"Failed password for {user} from {ip} port {40000 + i} ssh2"
        for i in range(count)
    )


def invalid_users(ip: str, *names: str) -> list[Event]:
    lines = (
        f"Mar  1 12:0{i}:00 web-1 sshd[{700 + i}]: Invalid user {name} from {ip} port 5{i}000"
        for i, name in enumerate(names)
    )
    return from_log("\n".join(lines))


SSH_ACCEPTED = "Mar  1 12:00:30 web-1 sshd[990]: Accepted password for deploy from {ip} port 41000 ssh2"


USERADD = (
    "Mar  1 12:00:00 {host} useradd[501]: new user: name={name}, UID=1003, GID=1003, home=/home/{name}, "
    "shell=/bin/bash, from=/dev/pts/0"
)
SUDO_RUN = "Mar  1 {at} {host} sudo[612]:      {user} : TTY=pts/1 ; PWD=/home/{user} ; USER=root ; COMMAND={command}"


def new_account_sudo(
    *, user: str = "eve", at: str = "12:04:10", host: str = "web-1", command: str = "/usr/bin/cat /etc/shadow"
) -> list[Event]:
    """useradd makes the account eve on web-1 at 12:00:00; then someone runs sudo."""
    created = USERADD.format(host="web-1", name="eve")
    ran = SUDO_RUN.format(at=at, host=host, user=user, command=command)
    return from_log(f"{ran}\n{created}" if at < "12:00:00" else f"{created}\n{ran}")


def audit_new_account_sudo() -> list[Event]:
    """The same through auditd: useradd's ADD_USER, then sudo's USER_CMD, with names enriched."""
    tail = '\x1dUID="{uid}" AUID="{auid}"'
    return from_log(
        "node=web-1 type=ADD_USER msg=audit(1772366400.140:4603): pid=2402 uid=0 auid=1000 ses=7 subj=unconfined "
        'msg=\'op=add-user acct="eve" exe="/usr/sbin/useradd" hostname=web-1 addr=? terminal=pts/0 res=success\''
        + tail.format(uid="root", auid="alice")
        + "\nnode=web-1 type=USER_CMD msg=audit(1772366700.220:4650): pid=2510 uid=1003 auid=1003 ses=9 "
        'subj=unconfined msg=\'cwd="/home/eve" cmd="cat /etc/shadow" exe="/usr/bin/sudo" terminal=pts/1 '
        "res=success'" + tail.format(uid="eve", auid="eve"),
        "auditd",
    )


def k8s(verb: str, resource: str, *, user: str = "alice@example.com", code: int = 200, **more: Any) -> list[Event]:
    record: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Request",
        "auditID": "5d0c6f43-0b1e-4c1e-8f0e-1d7e2b9f3a11",
        "stage": "ResponseComplete",
        "requestURI": more.pop("uri", f"/api/v1/namespaces/prod/{resource}/x"),
        "verb": verb,
        "user": {"username": user, "groups": ["system:authenticated"]},
        "sourceIPs": ["192.0.2.44"],
        "objectRef": {"resource": resource, "namespace": "prod", "name": "x", **more.pop("ref", {})},
        "responseStatus": {"metadata": {}, "code": code},
        "requestReceivedTimestamp": "2026-03-01T12:00:00.000000Z",
        "stageTimestamp": "2026-03-01T12:00:00.100000Z",
        **more,
    }
    return from_log(orjson.dumps(record).decode(), "k8s-audit")


def binding(role: str) -> list[Event]:
    body = {"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role}}
    return k8s("create", "clusterrolebindings", requestObject=body)


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
    ("new-account-then-sudo", new_account_sudo()),
    ("new-account-then-sudo", new_account_sudo(at="12:15:00")),  # the window's edge is inside
    ("new-account-then-sudo", audit_new_account_sudo()),
    ("service-stopped-unexpectedly", service("stopped")),
    ("service-stopped-unexpectedly", service("failed", expected=False)),
    ("service-stopped-unexpectedly", [event("service_stopped", details={"service": "sshd", "state": "stopped"})]),
    ("ssh-brute-force-source", from_log(ssh_failures("203.0.113.7", 5))),
    (
        "ssh-brute-force-source",
        from_log(ssh_failures("2001:db8::7", 3) + "\n" + ssh_failures("2001:db8::7", 2, user="admin")),
    ),
    (
        "ssh-login-after-brute-force",
        from_log(ssh_failures("203.0.113.7", 5) + "\n" + SSH_ACCEPTED.format(ip="203.0.113.7")),
    ),
    ("ssh-invalid-user-enumeration", invalid_users("198.51.100.9", "oracle", "test", "pi")),
    (
        "sudo-password-failures",
        from_log(
            "Mar  1 12:00:00 web-1 sudo[77]:    alice : 3 incorrect password attempts ; "
            "TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/bin/bash"
        ),
    ),
    (
        "sudo-user-not-in-sudoers",
        from_log(
            "Mar  1 12:00:00 web-1 sudo[78]:    mallory : user NOT in sudoers ; "
            "TTY=pts/1 ; PWD=/tmp ; USER=root ; COMMAND=/bin/sh"
        ),
    ),
    ("k8s-pod-exec", k8s("create", "pods", ref={"subresource": "exec"}, code=101)),
    ("k8s-secret-read-by-user", k8s("get", "secrets")),
    ("k8s-cluster-admin-binding", binding("cluster-admin")),
    ("k8s-anonymous-request-allowed", k8s("get", "configmaps", user="system:anonymous")),
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
    # Someone else's sudo, the new account's sudo too late, on another host, or before it existed.
    ("new-account-then-sudo", new_account_sudo(user="alice")),
    ("new-account-then-sudo", new_account_sudo(at="12:15:01")),
    ("new-account-then-sudo", new_account_sudo(host="web-2")),
    ("new-account-then-sudo", new_account_sudo(at="11:59:00")),
    # A creation event that names no account joins nothing, not even a sudo without a user.
    (
        "new-account-then-sudo",
        [event("user_created", user_id=None), event("sudo_command", 1, user_id=None, details={"command": "id"})],
    ),
    ("service-stopped-unexpectedly", service("stopped", expected=True)),
    ("service-stopped-unexpectedly", service("running")),
    ("ssh-brute-force-source", from_log(ssh_failures("203.0.113.7", 4))),
    # Five failures, but from five addresses: a per-address rule must not add them up.
    ("ssh-brute-force-source", [e for i in range(5) for e in from_log(ssh_failures(f"203.0.113.{i}", 1, start=i))]),
    (
        "ssh-login-after-brute-force",
        from_log(ssh_failures("203.0.113.7", 5) + "\n" + SSH_ACCEPTED.format(ip="198.51.100.1")),
    ),
    # The same name again and again is one name; three names from three addresses are no enumeration.
    ("ssh-invalid-user-enumeration", invalid_users("198.51.100.9", "oracle", "oracle", "oracle", "test")),
    (
        "ssh-invalid-user-enumeration",
        [e for i, name in enumerate(("a", "b", "c")) for e in invalid_users(f"198.51.100.{i + 1}", name)],
    ),
    (
        "sudo-password-failures",
        from_log(
            "Mar  1 12:00:00 web-1 sudo[79]:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/id"
        ),
    ),
    (
        "sudo-user-not-in-sudoers",
        from_log(
            "Mar  1 12:00:00 web-1 sudo[80]:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/id"
        ),
    ),
    ("k8s-pod-exec", k8s("get", "pods")),
    ("k8s-pod-exec", k8s("create", "pods", ref={"subresource": "exec"}, code=403)),
    ("k8s-secret-read-by-user", k8s("get", "secrets", user="system:serviceaccount:ci:deployer")),
    ("k8s-secret-read-by-user", k8s("get", "secrets", code=403)),
    ("k8s-cluster-admin-binding", binding("view")),
    ("k8s-anonymous-request-allowed", k8s("get", "configmaps", user="system:anonymous", code=403)),
    ("k8s-anonymous-request-allowed", k8s("get", "version", user="system:anonymous", uri="/version")),
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
    alerts = await detector.process(from_log(ssh_failures("203.0.113.7", 5, user="admin")))
    # The same burst is also a burst against one user on one host: both rules speak of it.
    assert sorted(alert.rule_id for alert in alerts) == ["failed-login-burst", "ssh-brute-force-source"]
    [brute_force] = [alert for alert in alerts if alert.rule_id == "ssh-brute-force-source"]
    assert brute_force.group == {"details.source.ip": "203.0.113.7"}
    assert brute_force.description == "5 failed SSH logins from 203.0.113.7 within 1m (latest: user admin on web-1)"
    [shadow] = await detector.process(file("/etc/shadow"))
    assert shadow.description == "/etc/shadow modified on web-1 by alice"
    assert shadow.group == {"server_hostname": "web-1", "details.resource": "/etc/shadow"}


async def test_a_new_account_using_sudo_is_named_with_its_command(pack: RuleSet, state: WindowState) -> None:
    detector = Detector(state, lambda: pack)
    events = new_account_sudo()
    [alert] = await detector.process(events)
    assert alert.rule_id == "new-account-then-sudo"
    assert alert.group == {"server_hostname": "web-1", "user_id": "eve"}
    assert alert.description == (
        "eve ran `/usr/bin/cat /etc/shadow` with sudo on web-1 within 15m of the account being created"
    )
    assert alert.event_ids == [e.event_id for e in events]
    # Further commands while the alert is open are its repeats, not new alerts.
    again = event("sudo_command", 6 * 60, user_id="eve", details={"command": "/bin/bash"})
    [repeat] = await detector.process([again])
    assert (repeat.alert_id, repeat.occurrences) == (alert.alert_id, 3)
