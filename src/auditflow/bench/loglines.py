"""Generated log lines for every parser format, for the ingest scenario and the parser throughput
check: realistic, reproducible from a seed, each sample with the plain `re` pattern its baseline loop
matches (one match per line and nothing else, the floor any parser is compared against)."""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson

SSHD_TEMPLATES = (
    "Failed password for {user} from {ip} port {port} ssh2",
    "Failed password for invalid user {user} from {ip} port {port} ssh2",
    "Invalid user {user} from {ip} port {port}",
    "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost={ip}  user={user}",
    "Connection closed by authenticating user {user} {ip} port {port} [preauth]",
    "Received disconnect from {ip} port {port}:11: Bye Bye [preauth]",
    # A made-up key fingerprint.
    "Accepted publickey for {user} from {ip} port {port} ssh2: ED25519"
    " SHA256:q2H3Jx0v5nUZ9m8W7kq1r8eYwB8t3m0F2x6c7a1b",  # pragma: allowlist secret
    "pam_unix(sshd:session): session opened for user {user}(uid=1000) by (uid=0)",
    'Connection from {ip} port {port} on 192.0.2.10 port 22 rdomain ""',
    "PAM 2 more authentication failures; logname= uid=0 euid=0 tty=ssh ruser= rhost={ip}  user={user}",
)
# Other programs of an auth.log, as (program, message); cron has no parser (generic events).
OTHER_PROGRAMS = (
    ("sudo", "   {user} : TTY=pts/0 ; PWD=/home/{user} ; USER=root ; COMMAND=/usr/bin/systemctl restart nginx"),
    ("sudo", "pam_unix(sudo:session): session opened for user root(uid=0) by {user}(uid=1000)"),
    (
        "su",
        "pam_unix(su:auth): authentication failure; logname={user} uid=1001 euid=0 tty=/dev/pts/1 ruser={user}"
        " rhost=  user=root",
    ),
    ("systemd", "Started nginx.service - A high performance web server and a reverse proxy server."),
    ("useradd", "new user: name={user}, UID=1003, GID=1003, home=/home/{user}, shell=/bin/bash, from=/dev/pts/0"),
    ("CRON", "pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)"),
)
USERS = ("root", "admin", "alice", "oracle", "ubuntu", "test", "git", "postgres")
START = datetime(2026, 12, 1, tzinfo=UTC)

_SYSLOG_BASELINE = re.compile(r"(\w{3} [ \d]\d \d\d:\d\d:\d\d) (\S+) ([^\s\[:]+)(?:\[(\d+)\])?: (.*)")


@dataclass(frozen=True, slots=True)
class LineSample:
    """Lines of one parser format, and what the baseline loop matches on each."""

    format: str
    generate: Callable[[int, int], Iterator[str]]  # (count, seed)
    baseline: re.Pattern[str]


def _rng(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 - reproducible lines, not security  # nosec B311


def _fields(rng: random.Random) -> dict[str, object]:
    return {"user": rng.choice(USERS), "ip": f"203.0.113.{rng.randrange(1, 255)}", "port": rng.randrange(1024, 65536)}


def _seconds(count: int) -> Iterator[datetime]:
    """Twenty lines a second from `START`, as busy servers log."""
    for n in range(count):
        yield START + timedelta(seconds=n // 20, milliseconds=n % 20 * 50)


def sshd_lines(count: int, seed: int = 7) -> Iterator[str]:
    """An sshd-only auth.log (RFC 3164, as rsyslog writes files)."""
    rng = _rng(seed)
    for at in _seconds(count):
        message = rng.choice(SSHD_TEMPLATES).format(**_fields(rng))
        yield f"{at:%b %e %H:%M:%S} bastion sshd[{rng.randrange(1000, 60000)}]: {message}"


def syslog_lines(count: int, seed: int = 7) -> Iterator[str]:
    """A whole auth.log: sshd for two lines in three, the rest sudo, su, systemd, account tools, cron."""
    rng = _rng(seed)
    for at in _seconds(count):
        if rng.random() < 2 / 3:
            program, message = "sshd", rng.choice(SSHD_TEMPLATES)
        else:
            program, message = rng.choice(OTHER_PROGRAMS)
        text = message.format(**_fields(rng))
        yield f"{at:%b %e %H:%M:%S} web{rng.randrange(1, 9)} {program}[{rng.randrange(1000, 60000)}]: {text}"


def rfc5424_lines(count: int, seed: int = 7) -> Iterator[str]:
    """sshd lines as RFC 5424 messages (what a syslog receiver gets from rsyslog's RSYSLOG_SyslogProtocol23Format)."""
    rng = _rng(seed)
    for at in _seconds(count):
        message = rng.choice(SSHD_TEMPLATES).format(**_fields(rng))
        stamp = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        yield f"<38>1 {stamp} bastion sshd {rng.randrange(1000, 60000)} - - {message}"


def auditd_lines(count: int, seed: int = 7) -> Iterator[str]:
    """audit.log authentication and login records of sshd, one record per serial."""
    rng = _rng(seed)
    for serial, at in enumerate(_seconds(count), 4000):
        values = _fields(rng)
        kind, op = rng.choice((("USER_AUTH", "PAM:authentication"), ("USER_LOGIN", "login")))
        result = "failed" if rng.random() < 0.7 else "success"
        yield (
            f"type={kind} msg=audit({at.timestamp():.3f}:{serial}): pid={rng.randrange(1000, 60000)} uid=0"
            " auid=4294967295 ses=4294967295 subj=system_u:system_r:sshd_t:s0-s0:c0.c1023"
            f' msg=\'op={op} acct="{values["user"]}" exe="/usr/sbin/sshd" hostname={values["ip"]}'
            f' addr={values["ip"]} terminal=ssh res={result}\'UID="root" AUID="unset"'
        )


def journald_lines(count: int, seed: int = 7) -> Iterator[str]:
    """`journalctl -o json` entries of sshd."""
    rng = _rng(seed)
    for n, at in enumerate(_seconds(count)):
        micros = str(int(at.timestamp() * 1_000_000))
        pid = str(rng.randrange(1000, 60000))
        entry = {
            "__CURSOR": f"s=9d3c2b1a;i={n:x}",
            "__REALTIME_TIMESTAMP": micros,
            "_HOSTNAME": "web01",
            "_TRANSPORT": "syslog",
            "PRIORITY": "6",
            "SYSLOG_FACILITY": "4",
            "SYSLOG_IDENTIFIER": "sshd",
            "_COMM": "sshd",
            "_EXE": "/usr/sbin/sshd",
            "_SYSTEMD_UNIT": "sshd.service",
            "_PID": pid,
            "SYSLOG_PID": pid,
            "_SOURCE_REALTIME_TIMESTAMP": micros,
            "MESSAGE": rng.choice(SSHD_TEMPLATES).format(**_fields(rng)),
        }
        yield orjson.dumps(entry).decode()


def k8s_audit_lines(count: int, seed: int = 7) -> Iterator[str]:
    """Kubernetes audit log entries at ResponseComplete (the stage that makes events)."""
    rng = _rng(seed)
    verbs = ("get", "list", "watch", "create", "update", "patch", "delete")
    resources = ("pods", "secrets", "configmaps", "deployments", "services")
    for n, at in enumerate(_seconds(count)):
        stamp = at.isoformat(timespec="microseconds").replace("+00:00", "Z")
        resource, namespace = rng.choice(resources), rng.choice(("payments", "web", "kube-system"))
        entry = {
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": "Metadata",
            "auditID": f"3b9a2f0e-1c7d-4e55-9a61-{n:012x}",
            "stage": "ResponseComplete",
            "requestURI": f"/api/v1/namespaces/{namespace}/{resource}",
            "verb": rng.choice(verbs),
            "user": {"username": f"{rng.choice(USERS)}@example.com", "groups": ["system:authenticated"]},
            "sourceIPs": [f"10.20.0.{rng.randrange(1, 255)}"],
            "userAgent": "kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46",
            "objectRef": {"resource": resource, "namespace": namespace, "apiVersion": "v1"},
            "responseStatus": {"metadata": {}, "code": rng.choice((200, 200, 201, 403, 404))},
            "requestReceivedTimestamp": stamp,
            "stageTimestamp": stamp,
            "annotations": {"authorization.k8s.io/decision": "allow"},
        }
        yield orjson.dumps(entry).decode()


_JSON_BASELINE = re.compile(r'\{"(\w+)":"([^"]*)"')

SAMPLES: dict[str, LineSample] = {
    "sshd": LineSample("sshd", sshd_lines, _SYSLOG_BASELINE),
    "syslog": LineSample("syslog", syslog_lines, _SYSLOG_BASELINE),
    "syslog-rfc5424": LineSample(
        "syslog", rfc5424_lines, re.compile(r"<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) (.*)")
    ),
    "auditd": LineSample("auditd", auditd_lines, re.compile(r"type=(\w+) msg=audit\((\d+)\.(\d+):(\d+)\): (.*)")),
    "journald": LineSample("journald", journald_lines, _JSON_BASELINE),
    "k8s-audit": LineSample("k8s-audit", k8s_audit_lines, _JSON_BASELINE),
}
