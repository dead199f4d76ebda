"""Synthetic audit activity: the benign event catalogue and the attack scenarios the default rules detect.

Every builder takes a `random.Random` and returns plain field dicts (no `event_id` or `timestamp`);
the generator stamps them, so one seed reproduces the same stream.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

Fields = dict[str, Any]

USERS = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "ken", "laura")
SERVICE_ACCOUNTS = ("svc-backup", "svc-deploy", "svc-monitor", "www-data", "postgres")
ALL_USERS = USERS + SERVICE_ACCOUNTS
ADMINS = ("alice", "grace")
HOSTS = (
    "web-01", "web-02", "web-03", "app-01", "app-02", "db-01", "db-02",
    "cache-01", "bastion-01", "build-01", "mail-01", "vpn-01",
)  # fmt: skip
SERVICES = ("nginx", "postgresql", "redis-server", "sshd", "cron", "docker", "node-exporter", "rsyslog")
OFFICE_NETS = ("10.0.1.", "10.0.2.", "10.8.0.", "192.168.10.")
BENIGN_PATHS = (
    "/var/www/html/index.html", "/srv/app/config.yaml", "/srv/app/releases/current/app.py",
    "/etc/nginx/conf.d/site.conf", "/var/log/app/app.log", "/home/bob/notes.txt", "/opt/reports/daily.csv",
)  # fmt: skip
BENIGN_SUDO = (
    "systemctl restart nginx", "systemctl status postgresql", "journalctl -u nginx --since today",
    "apt-get update", "tail -n 100 /var/log/syslog", "docker ps", "du -sh /var/log", "ls -la /var/lib/docker",
)  # fmt: skip
BENIGN_PROCESSES = (
    ("python3", "python3 /srv/app/worker.py"), ("backup.sh", "/usr/local/bin/backup.sh --incremental"),
    ("nginx", "nginx -g daemon off;"), ("psql", "psql -c 'select 1'"), ("git", "git pull --ff-only"),
)  # fmt: skip
BENIGN_GROUPS = (["users"], ["developers"], ["analysts"], ["users", "developers"])

SENSITIVE_PATHS = (
    "/etc/shadow", "/etc/passwd", "/etc/sudoers", "/etc/sudoers.d/99-local",
    "/root/.ssh/authorized_keys", "/etc/ssh/sshd_config",
)  # fmt: skip
DESTRUCTIVE_SUDO = (
    "rm -rf /", "rm -rf --no-preserve-root /", "chmod 777 /etc/passwd", "chmod -R 777 /etc",
    "usermod -aG sudo eve", "gpasswd -a eve wheel", "passwd root", "visudo", "setenforce 0",
    "dd if=/dev/zero of=/dev/sda", "mkfs.ext4 /dev/sda1", "iptables -F",
)  # fmt: skip
# What a fresh account runs first with sudo: enough to alarm, none of it DESTRUCTIVE_SUDO.
NEW_ACCOUNT_SUDO = ("/bin/bash", "cat /etc/shadow", "id", "crontab -l -u root", "ls -la /root")
BRUTE_FORCE_TARGETS = ("root", "admin", "test", "ubuntu", "oracle", "deploy")
PRIVILEGED_GROUPS = (["sudo"], ["wheel"], ["admin"], ["users", "sudo"])
ATTACKER_NEW_USERS = ("eve", "backdoor", "support", "sysadm", "temp1")
CRITICAL_SERVICES = ("postgresql", "nginx", "sshd", "auditd", "redis-server")


# Weighted by repetition: `rng.choice` on a tuple is several times cheaper than `rng.choices`.
_LOGIN_METHODS = ("ssh",) * 6 + ("console",) + ("sso",) * 3


def _ip(rng: random.Random) -> str:
    return rng.choice(OFFICE_NETS) + str(rng.randint(2, 254))


def _external_ip(rng: random.Random) -> str:
    # Documentation ranges (RFC 5737): realistic shape, never a real address.
    return f"{rng.choice(('198.51.100', '203.0.113', '192.0.2'))}.{rng.randint(1, 254)}"


def _fields(event_type: str, source: str, host: str, user: str, details: Fields, severity: str = "INFO") -> Fields:
    return {
        "event_type": event_type,
        "source_service": source,
        "server_hostname": host,
        "user_id": user,
        "severity": severity,
        "action_result": "SUCCESS",
        "details": details,
    }


def _login(user: str, host: str, result: str, method: str, source_ip: str) -> Fields:
    source = {"ssh": "sshd", "console": "login", "sso": "sso-gateway"}[method]
    # Field names as the log parsers make them (Elastic Common Schema), so the same rules see both.
    fields = _fields("user_login", source, host, user, {"method": method, "source": {"ip": source_ip}})
    fields.update(action_result=result, severity="INFO" if result == "SUCCESS" else "WARNING")
    return fields


# --- benign activity ---------------------------------------------------------------------------


def _benign_login(rng: random.Random) -> Fields:
    # The occasional typo keeps FAILURE in the benign stream without tripping a 3-in-60s rule.
    result = "FAILURE" if rng.random() < 0.03 else "SUCCESS"
    return _login(rng.choice(USERS), rng.choice(HOSTS), result, rng.choice(_LOGIN_METHODS), _ip(rng))


def _benign_logout(rng: random.Random) -> Fields:
    details = {"session_seconds": rng.randint(30, 8 * 3600)}
    return _fields("user_logout", "sshd", rng.choice(HOSTS), rng.choice(USERS), details)


def _benign_file(rng: random.Random) -> Fields:
    details = {"resource": rng.choice(BENIGN_PATHS), "action": rng.choice(("write", "write", "chmod", "delete"))}
    return _fields("file_modified", "file-integrity-monitor", rng.choice(HOSTS), rng.choice(ALL_USERS), details)


def _benign_sudo(rng: random.Random) -> Fields:
    details = {"command": rng.choice(BENIGN_SUDO), "run_as": "root"}
    return _fields("sudo_command", "sudo", rng.choice(HOSTS), rng.choice(USERS), details)


def _benign_user_created(rng: random.Random) -> Fields:
    details = {"new_user": f"user{rng.randint(100, 999)}", "groups": list(rng.choice(BENIGN_GROUPS))}
    return _fields("user_created", "identity-service", rng.choice(HOSTS), rng.choice(ADMINS), details)


def _benign_group(rng: random.Random) -> Fields:
    group, action = rng.choice(("developers", "docker", "analysts")), rng.choice(("add", "remove"))
    details = {"group": group, "member": rng.choice(USERS), "action": action}
    return _fields("group_modified", "identity-service", rng.choice(HOSTS), rng.choice(ADMINS), details)


def _benign_service(rng: random.Random) -> Fields:
    # Planned restarts and maintenance stops: `expected` is what keeps them out of the alerts.
    state = rng.choice(("running", "running", "running", "running", "stopped"))
    details = {"service": rng.choice(SERVICES), "state": state, "expected": True}
    return _fields("service_state_change", "systemd", rng.choice(HOSTS), "svc-deploy", details)


def _benign_process(rng: random.Random) -> Fields:
    process, command_line = rng.choice(BENIGN_PROCESSES)
    details = {"process": process, "command_line": command_line, "pid": rng.randint(300, 65000)}
    return _fields("process_started", "auditd", rng.choice(HOSTS), rng.choice(ALL_USERS), details)


def _benign_network(rng: random.Random) -> Fields:
    port, protocol = rng.choice(((443, "tcp"), (5432, "tcp"), (6379, "tcp"), (53, "udp"), (22, "tcp")))
    details = {
        "source": {"ip": _ip(rng)},
        "destination": {"ip": _ip(rng), "port": port},
        "network": {"transport": protocol, "direction": rng.choice(("inbound", "outbound"))},
    }
    return _fields("network_connection", "conntrack", rng.choice(HOSTS), rng.choice(SERVICE_ACCOUNTS), details)


BENIGN: tuple[tuple[Callable[[random.Random], Fields], int], ...] = (
    (_benign_login, 20),
    (_benign_logout, 12),
    (_benign_file, 14),
    (_benign_sudo, 8),
    (_benign_user_created, 1),
    (_benign_group, 1),
    (_benign_service, 5),
    (_benign_process, 20),
    (_benign_network, 20),
)

# --- attack scenarios ----------------------------------------------------------------------------
# Each returns (offset_ms, fields) pairs with strictly increasing offsets; the generator anchors the
# last one at "now", so the whole scenario lies in the last few seconds.

Step = tuple[int, Fields]


def _steps(rng: random.Random, events: list[Fields], gap_ms: tuple[int, int]) -> list[Step]:
    offset, steps = 0, []
    for fields in events:
        steps.append((offset, fields))
        offset += rng.randint(*gap_ms)
    return steps


def brute_force(rng: random.Random) -> list[Step]:
    """5-10 failed logins against one user and host from one address, within a few seconds."""
    # Mostly the names password sprayers try; a real user now and then, whose next ordinary login
    # may then (rightly) look like a compromise.
    user, host, ip = rng.choice(BRUTE_FORCE_TARGETS + USERS[:3]), rng.choice(HOSTS), _external_ip(rng)
    attempts = [_login(user, host, "FAILURE", "ssh", ip) for _ in range(rng.randint(5, 10))]
    return _steps(rng, attempts, (100, 400))


def login_after_failures(rng: random.Random) -> list[Step]:
    """Three or four failures, then a success for the same user and host: a guessed password (too few
    attempts from the address for the per-address brute-force rules)."""
    user, host, ip = rng.choice(USERS), rng.choice(HOSTS), _external_ip(rng)
    events = [_login(user, host, "FAILURE", "ssh", ip) for _ in range(rng.randint(3, 4))]
    success = _login(user, host, "SUCCESS", "ssh", ip)
    success["severity"] = "WARNING"
    return _steps(rng, [*events, success], (150, 450))


def password_spray_success(rng: random.Random) -> list[Step]:
    """One address tries five or six account names once each, then gets in as a real user."""
    host, ip = rng.choice(HOSTS), _external_ip(rng)
    targets = rng.sample(BRUTE_FORCE_TARGETS, rng.randint(5, 6))
    events = [_login(target, host, "FAILURE", "ssh", ip) for target in targets]
    success = _login(rng.choice(USERS), host, "SUCCESS", "ssh", ip)
    success["severity"] = "WARNING"
    return _steps(rng, [*events, success], (100, 400))


def user_enumeration(rng: random.Random) -> list[Step]:
    """One address asks sshd for three or four account names that do not exist."""
    host, ip = rng.choice(HOSTS), _external_ip(rng)
    names = rng.sample(("oracle", "postgres", "git", "pi", "ftpuser", "nagios", "hadoop"), rng.randint(3, 4))
    probes = []
    for name in names:
        probe = _fields("ssh_invalid_user", "sshd", host, name, {"source": {"ip": ip}, "ssh": {"invalid_user": True}})
        probe.update(action_result="FAILURE", severity="WARNING")
        probes.append(probe)
    return _steps(rng, probes, (200, 2000))


def sudo_password_failures(rng: random.Random) -> list[Step]:
    """Someone at a user's terminal guesses that user's password for sudo."""
    details = {"attempts": rng.randint(2, 3), "command": rng.choice(DESTRUCTIVE_SUDO), "runas": "root"}
    failure = _fields("sudo_auth_failure", "sudo", rng.choice(HOSTS), rng.choice(USERS), details, "WARNING")
    failure["action_result"] = "FAILURE"
    return [(0, failure)]


def sudo_not_in_sudoers(rng: random.Random) -> list[Step]:
    """A service account, or an account an attacker holds, tries sudo without being allowed to."""
    details = {"command": rng.choice(("/bin/bash", "/bin/sh", "/usr/bin/cat /etc/shadow")), "runas": "root"}
    denied = _fields("sudo_denied", "sudo", rng.choice(HOSTS), rng.choice(SERVICE_ACCOUNTS), details, "ERROR")
    denied["action_result"] = "FAILURE"
    return [(0, denied)]


def _k8s(verb: str, resource: str, user: str, ip: str, **more: Any) -> Fields:
    audit = {
        "verb": verb,
        "objectRef": {
            "resource": resource,
            "namespace": "payments",
            "name": more.pop("name", "api"),
            **more.pop("ref", {}),
        },
        "user": {"username": user, "groups": ["system:authenticated"]},
        "responseStatus": {"code": more.pop("code", 200)},
        "requestURI": more.pop("uri", f"/api/v1/namespaces/payments/{resource}"),
        **more,
    }
    details = {"source": {"ip": ip}, "kubernetes": {"audit": audit}}
    return _fields("k8s_audit", "kube-apiserver", "kubernetes", user, details)


def kubernetes_takeover(rng: random.Random) -> list[Step]:
    """An exposed API server: an anonymous read gets through, a stolen identity reads secrets, binds
    itself to cluster-admin and opens a shell in a pod."""
    ip, user = _external_ip(rng), f"{rng.choice(USERS)}@example.com"
    anonymous = _k8s("list", "configmaps", "system:anonymous", ip)
    secrets = _k8s("list", "secrets", user, ip)
    binding = _k8s(
        "create",
        "clusterrolebindings",
        user,
        ip,
        name=f"{rng.choice(ATTACKER_NEW_USERS)}-admin",
        code=201,
        requestObject={"roleRef": {"kind": "ClusterRole", "name": "cluster-admin"}},
    )
    shell = _k8s("create", "pods", user, ip, name="api-7d4b9c", ref={"subresource": "exec"}, code=101)
    return _steps(rng, [anonymous, secrets, binding, shell], (1000, 5000))


def sensitive_file_edit(rng: random.Random) -> list[Step]:
    """A login, then a write to a credential or privilege file."""
    user, host = rng.choice(USERS), rng.choice(HOSTS)
    details = {"resource": rng.choice(SENSITIVE_PATHS), "action": rng.choice(("write", "write", "chmod"))}
    edit = _fields("file_modified", "file-integrity-monitor", host, user, details, "CRITICAL")
    return _steps(rng, [_login(user, host, "SUCCESS", "ssh", _ip(rng)), edit], (500, 3000))


def destructive_sudo(rng: random.Random) -> list[Step]:
    """A login, then a destructive or privilege-changing command run through sudo."""
    user, host = rng.choice(USERS), rng.choice(HOSTS)
    details = {"command": rng.choice(DESTRUCTIVE_SUDO), "run_as": "root"}
    command = _fields("sudo_command", "sudo", host, user, details, "CRITICAL")
    return _steps(rng, [_login(user, host, "SUCCESS", "ssh", _ip(rng)), command], (500, 3000))


def privileged_account_created(rng: random.Random) -> list[Step]:
    """A new account placed straight into an administrative group, then its first login."""
    creator, host, new_user = rng.choice(USERS), rng.choice(HOSTS), rng.choice(ATTACKER_NEW_USERS)
    details = {"new_user": new_user, "groups": list(rng.choice(PRIVILEGED_GROUPS))}
    created = _fields("user_created", "identity-service", host, creator, details, "WARNING")
    return _steps(rng, [created, _login(new_user, host, "SUCCESS", "ssh", _external_ip(rng))], (1000, 4000))


def new_account_sudo(rng: random.Random) -> list[Step]:
    """An account made in no privileged group (its sudo rights granted elsewhere, say in a sudoers
    file) logs in and runs sudo within seconds: not a destructive command, just a look around."""
    creator, host, new_user = rng.choice(ADMINS), rng.choice(HOSTS), rng.choice(ATTACKER_NEW_USERS)
    details = {"new_user": new_user, "groups": list(rng.choice(BENIGN_GROUPS))}
    created = _fields("user_created", "identity-service", host, creator, details)
    login = _login(new_user, host, "SUCCESS", "ssh", _external_ip(rng))
    sudo = {"command": rng.choice(NEW_ACCOUNT_SUDO), "run_as": "root"}
    command = _fields("sudo_command", "sudo", host, new_user, sudo, "WARNING")
    return _steps(rng, [created, login, command], (1000, 4000))


def privileged_group_added(rng: random.Random) -> list[Step]:
    """An existing account added to an administrative group."""
    admin, host, member = rng.choice(USERS), rng.choice(HOSTS), rng.choice(USERS + ATTACKER_NEW_USERS)
    details = {"group": rng.choice(("sudo", "wheel", "admin")), "member": member, "action": "add"}
    return [(0, _fields("group_modified", "identity-service", host, admin, details, "WARNING"))]


def service_stopped(rng: random.Random) -> list[Step]:
    """A critical service stops without a planned change."""
    details = {"service": rng.choice(CRITICAL_SERVICES), "state": "stopped", "expected": False}
    return [(0, _fields("service_state_change", "systemd", rng.choice(HOSTS), rng.choice(USERS), details, "ERROR"))]


SCENARIOS: dict[str, Callable[[random.Random], list[Step]]] = {
    "brute_force": brute_force,
    "login_after_failures": login_after_failures,
    "sensitive_file_edit": sensitive_file_edit,
    "destructive_sudo": destructive_sudo,
    "privileged_account_created": privileged_account_created,
    "privileged_group_added": privileged_group_added,
    "new_account_sudo": new_account_sudo,
    "service_stopped": service_stopped,
    "password_spray_success": password_spray_success,
    "user_enumeration": user_enumeration,
    "sudo_password_failures": sudo_password_failures,
    "sudo_not_in_sudoers": sudo_not_in_sudoers,
    "kubernetes_takeover": kubernetes_takeover,
}
# Mean events per scenario, used to turn an event share into a per-draw probability.
MEAN_SCENARIO_LENGTH = (7.5 + 4.5 + 2 + 2 + 2 + 1 + 3 + 1 + 6.5 + 3.5 + 1 + 1 + 4) / len(SCENARIOS)
