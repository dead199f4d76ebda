"""schemathesis with all its checks against the real servers: the embedded process and the
notification service on PostgreSQL. Short and seeded here (a few examples per operation); the long
run is the same runner with more examples (docs/operations/fuzzing.md)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.processes import AuditflowProcess, auditflow_env, free_port
from tests.e2e.stack import TOKEN as STACK_TOKEN
from tests.e2e.stack import Stack
from tests.fuzz.schemathesis_run import run

TOKEN = "fuzz-test-token-0123456789abcdef"
EXAMPLES = 8
SEED = 20261202

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def embedded_process(tmp_path: Path) -> Iterator[AuditflowProcess]:
    port = free_port()
    process = AuditflowProcess(
        ["run", "--generator-rate", "0", "--port", str(port)],
        auditflow_env(tmp_path, {"AUDITFLOW_API_TOKENS": TOKEN}),
        port,
        token=TOKEN,
    )
    try:
        yield process.start()
    finally:
        process.kill()


@pytest.fixture
def notification_process(tmp_path: Path) -> Iterator[AuditflowProcess]:
    stack = Stack.create(tmp_path)
    try:
        stack.migrate()
        yield stack.serve("notification")
    finally:
        stack.destroy()


def check(process: AuditflowProcess, token: str, tmp_path: Path) -> None:
    result = run(process.url, token, examples=EXAMPLES, seed=SEED, report=tmp_path / "fuzz.ndjson")
    assert result.cases > 100, result.output
    assert result.server_errors == 0, result.output
    assert result.exit_code == 0, result.output


def test_embedded_api_passes_every_check(embedded_process: AuditflowProcess, tmp_path: Path) -> None:
    check(embedded_process, TOKEN, tmp_path)


def test_notification_api_on_postgres_passes_every_check(
    notification_process: AuditflowProcess, tmp_path: Path
) -> None:
    check(notification_process, STACK_TOKEN, tmp_path)
