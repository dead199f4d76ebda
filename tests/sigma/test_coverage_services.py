"""Kinds of SigmaHQ syslog-service and Kubernetes rules that convert since programs without a
parser make generic events and rule paths go through lists: each rule is written for the project
the way those rules are written, converted, and run over events the real parsers made from
realistic lines. It must fire on the line it describes and stay quiet on a near miss."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from auditflow.backends.state import WindowState
from auditflow.parsers.k8s_audit import K8sAuditParser
from auditflow.parsers.syslog import SyslogParser
from auditflow.rules.fields import make_getter
from tests.sigma.helpers import convert_one, fired_on, k8s_rule, parsed

HEADER = """title: "{title}"
id: 7a2b3c4d-0000-4000-8000-{serial:012d}
status: test
level: medium
logsource: {{product: linux, service: {service}}}
"""


def syslog_rule(service: str, detection: str, serial: int = 1) -> str:
    return HEADER.format(title=f"{service} rule", serial=serial, service=service) + detection


def line(program: str, message: str, pid: int = 812) -> str:
    return f"Dec  3 04:10:11 files1 {program}[{pid}]: {message}"


async def test_services_without_a_parser_are_their_programs_syslog_lines(tmp_path: Path, state: WindowState) -> None:
    cases = [
        # (service, keywords, the line it must fire on, near misses: other text, or the text from another program)
        (
            "clamav",
            ["Trojan*FOUND", "Webshell*FOUND"],
            line("clamd", "/srv/uploads/img.php: Php.Webshell.Generic-1 FOUND"),
            [line("clamd", "/srv/uploads/cat.png: OK"), line("nginx", "GET /Webshell?q=FOUND 404")],
        ),
        (
            "cron",
            ["REPLACE"],
            line("crontab", "(mallory) REPLACE (mallory)"),
            [line("crontab", "(mallory) LIST (mallory)"), line("sudo", "REPLACE me : TTY=pts/0 ; COMMAND=/bin/ls")],
        ),
        (
            "guacamole",
            ["(2 users now present)"],
            line("guacd", 'User "@4f1c" joined connection "$9ab2" (2 users now present)'),
            [line("guacd", 'User "@4f1c" joined connection "$9ab2" (1 users now present)')],
        ),
        (
            "vsftpd",
            ["Connection refused: too many sessions for this address."],
            line("vsftpd", "Connection refused: too many sessions for this address."),
            [line("vsftpd", '[ftp] OK LOGIN: Client "192.0.2.4"')],
        ),
    ]
    for serial, (service, keywords, hit, misses) in enumerate(cases, 1):
        detection = "detection:\n  keywords:\n" + "".join(f"    - '{k}'\n" for k in keywords)
        rule = convert_one(tmp_path / service, syslog_rule(service, detection + "  condition: keywords\n", serial))
        events = parsed(SyslogParser(), hit, *misses)
        assert [e.details["event"]["original"] for e in await fired_on(state, rule, events)] == [hit], service


async def test_keywords_of_a_message_the_program_parser_does_not_know(tmp_path: Path, state: WindowState) -> None:
    rule = convert_one(
        tmp_path,
        syslog_rule(
            "sshd",
            "detection:\n  keywords:\n    - 'Corrupted MAC on input'\n    - 'bad client public DH value'\n"
            "  condition: keywords\n",
        ),
    )
    hit = line("sshd", "Corrupted MAC on input. [preauth]", pid=4410)
    events = parsed(
        SyslogParser(),
        hit,
        line("sshd", "Connection closed by 198.51.100.7 port 52113 [preauth]", pid=4411),
        line("kernel", "Corrupted MAC on input"),  # not sshd
    )
    assert [e.details["event"]["original"] for e in await fired_on(state, rule, events)] == [hit]


def pod(name: str, spec: dict[str, Any], verb: str = "create") -> str:
    return json.dumps(
        {
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": "Request",
            "auditID": f"0c4b2a6e-1d3f-4b5a-9c8d-{name.encode().hex()[:12]:0>12}",
            "stage": "ResponseComplete",
            "requestURI": "/api/v1/namespaces/default/pods",
            "verb": verb,
            "user": {"username": "system:serviceaccount:default:deployer", "groups": ["system:serviceaccounts"]},
            "sourceIPs": ["10.20.0.31"],
            "userAgent": "kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46",
            "objectRef": {"resource": "pods", "namespace": "default", "name": name, "apiVersion": "v1"},
            "responseStatus": {"metadata": {}, "code": 201},
            "requestObject": {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": name}, "spec": spec},
            "requestReceivedTimestamp": "2026-12-03T04:10:11.100000Z",
            "stageTimestamp": "2026-12-03T04:10:11.180000Z",
        }
    )


def container(name: str, **security: Any) -> dict[str, Any]:
    return {"name": name, "image": "busybox:1.36", **({"securityContext": security} if security else {})}


async def test_a_pod_with_a_host_path_volume(tmp_path: Path, state: WindowState) -> None:
    rule = convert_one(
        tmp_path,
        k8s_rule(
            "detection:\n  selection:\n    verb: create\n    objectRef.resource: pods\n    hostPath: '*'\n"
            "  condition: selection\n"
        ),
    )
    events = parsed(
        K8sAuditParser(),
        pod(
            "node-reader",
            {
                "containers": [container("sh")],
                "volumes": [{"name": "tmp", "emptyDir": {}}, {"name": "root", "hostPath": {"path": "/"}}],
            },
        ),
        pod("cache", {"containers": [container("sh")], "volumes": [{"name": "tmp", "emptyDir": {}}]}),
    )
    assert [e.details["kubernetes"]["audit"]["objectRef"]["name"] for e in await fired_on(state, rule, events)] == [
        "node-reader"
    ]


async def test_a_pod_whose_containers_ask_for_capabilities(tmp_path: Path, state: WindowState) -> None:
    rule = convert_one(
        tmp_path,
        k8s_rule(
            "detection:\n  selection:\n    verb: create\n    objectRef.resource: pods\n    capabilities: '*'\n"
            "  condition: selection\n"
        ),
    )
    events = parsed(
        K8sAuditParser(),
        pod("sniffer", {"containers": [container("app"), container("tap", capabilities={"add": ["NET_ADMIN"]})]}),
        pod("setup", {"initContainers": [container("init", capabilities={"add": ["SYS_ADMIN"]})], "containers": []}),
        pod("plain", {"containers": [container("app", runAsNonRoot=True)]}),  # near miss: no capabilities
    )
    names = [e.details["kubernetes"]["audit"]["objectRef"]["name"] for e in await fired_on(state, rule, events)]
    assert names == ["sniffer", "setup"]


def test_a_path_through_a_list_reads_every_element_like_field_value() -> None:
    event = parsed(
        K8sAuditParser(),
        pod(
            "p", {"volumes": [{"name": "a", "hostPath": {"path": "/etc"}}, {"name": "b"}, {"hostPath": {"path": "/"}}]}
        ),
    )[0]
    path = "details.kubernetes.audit.requestObject.spec.volumes.hostPath.path"
    assert make_getter(path)(event) == event.field_value(path) == ["/etc", "/"]
    missing = "details.kubernetes.audit.requestObject.spec.volumes.nfs"
    assert make_getter(missing)(event) is None
    assert event.field_value(missing) is None


async def test_sudo_fields_by_their_own_names(tmp_path: Path, state: WindowState) -> None:
    # the run-as user given as a number that sudo before 1.8.28 turned into root (-u#-1)
    rule = convert_one(
        tmp_path,
        syslog_rule("sudo", "detection:\n  selection:\n    USER: ['#-*', '#*4294967295']\n  condition: selection\n"),
    )
    sudo = "   alice : TTY=pts/0 ; PWD=/home/alice ; USER={user} ; COMMAND=/usr/bin/id"
    hit = line("sudo", sudo.format(user="#-1"))
    events = parsed(SyslogParser(), hit, line("sudo", sudo.format(user="#0")), line("sudo", sudo.format(user="root")))
    assert [e.details["event"]["original"] for e in await fired_on(state, rule, events)] == [hit]
