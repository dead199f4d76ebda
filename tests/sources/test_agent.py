"""The agent in-process against a recording API: lines arrive as events, offsets are checkpointed
only after a 202, the API being down holds the lines back until it recovers, /healthz and /metrics
answer, and configuration errors name the key at fault."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from auditflow.errors import ConfigError
from auditflow.parsers.registry import create_parser
from auditflow.sources.agent import Agent
from auditflow.sources.agent_config import AgentConfig, load_agent_config
from auditflow.sources.agent_metrics import StatusServer
from auditflow.sources.checkpoint import CheckpointFile
from tests.sources.receiver import Receiver


def _line(n: int) -> str:
    return f"Mar  3 04:12:{n % 60:02d} web1 sshd[42]: Failed password for u{n} from 203.0.113.9 port {n} ssh2\n"


def _config(tmp_path: Path, url: str, **extra: Any) -> AgentConfig:
    return AgentConfig.model_validate(
        {
            "api": {"url": url, "token": "secret", "timeout": 2},
            "files": [{"path": str(tmp_path / "auth.log"), "format": "sshd", "forward_unparsed": True}],
            "checkpoint_file": str(tmp_path / "state" / "checkpoints.json"),
            "poll_interval": 0.02,
            "batch": {"max_events": 50, "linger": 0.02},
            "retry": {"initial": 0.05, "max": 0.2},
            "http": None,
            **extra,
        }
    )


async def _until(condition: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    with Receiver() as running:
        yield running


async def _running(agent: Agent) -> tuple[asyncio.Event, asyncio.Task[None]]:
    stop = asyncio.Event()
    return stop, asyncio.create_task(agent.run(stop))


async def test_lines_arrive_and_the_checkpoint_follows_the_accepted_ones(tmp_path: Path, receiver: Receiver) -> None:
    log = tmp_path / "auth.log"
    log.write_text("".join(_line(n) for n in range(120)) + "not sshd at all\n")
    config = _config(tmp_path, receiver.url)
    agent = Agent(config, "secret", create_parser)
    stop, task = await _running(agent)
    await _until(lambda: len(receiver.snapshot()) == 121)
    stop.set()
    await task
    events = receiver.snapshot()
    assert [e["user_id"] for e in events[:120]] == [f"u{n}" for n in range(120)]
    assert events[120]["event_type"] == "log_line_unparsed"
    assert receiver.requests == 3  # batches of at most 50 events
    saved = CheckpointFile(config.checkpoint_file).load()
    assert saved[str(log)].offset == log.stat().st_size
    assert agent.metrics.unparsed.labels(str(log), "no-header")._value.get() == 1


async def test_api_down_holds_the_lines_and_the_checkpoint_until_it_recovers(
    tmp_path: Path, receiver: Receiver
) -> None:
    log = tmp_path / "auth.log"
    log.write_text(_line(0))
    config = _config(tmp_path, receiver.url)
    agent = Agent(config, "secret", create_parser)
    stop, task = await _running(agent)
    await _until(lambda: len(receiver.snapshot()) == 1)
    receiver.down = True
    with open(log, "a") as file:
        file.write(_line(1) + _line(2))
    await _until(lambda: receiver.requests >= 4)
    assert agent.health()["api"] == "down"
    assert "http_503" in agent.health()["api_error"]
    assert CheckpointFile(config.checkpoint_file).load()[str(log)].offset == len(_line(0))
    receiver.down = False
    await _until(lambda: len(receiver.snapshot()) == 3)
    await _until(lambda: agent.health()["api"] == "up")
    stop.set()
    await task
    assert [e["user_id"] for e in receiver.snapshot()] == ["u0", "u1", "u2"]
    assert CheckpointFile(config.checkpoint_file).load()[str(log)].offset == log.stat().st_size


async def test_stopping_while_the_api_is_down_keeps_the_lines_for_next_time(tmp_path: Path, receiver: Receiver) -> None:
    log = tmp_path / "auth.log"
    log.write_text(_line(0) + _line(1))
    receiver.down = True
    config = _config(tmp_path, receiver.url)
    agent = Agent(config, "secret", create_parser)
    stop, task = await _running(agent)
    await _until(lambda: receiver.requests >= 1)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert CheckpointFile(config.checkpoint_file).load() == {}
    receiver.down = False
    again = Agent(config, "secret", create_parser)
    stop, task = await _running(again)
    await _until(lambda: len(receiver.snapshot()) == 2)
    stop.set()
    await task


async def test_buffer_is_bounded_while_the_api_is_down(tmp_path: Path, receiver: Receiver) -> None:
    log = tmp_path / "auth.log"
    log.write_text("".join(_line(n) for n in range(500)))
    receiver.down = True
    config = _config(tmp_path, receiver.url, buffer={"max_lines": 20})
    agent = Agent(config, "secret", create_parser)
    stop, task = await _running(agent)
    await _until(lambda: receiver.requests >= 3)
    assert agent.health()["buffered_lines"] <= 20
    stop.set()
    await asyncio.wait_for(task, 5)


async def test_healthz_and_metrics_answer(tmp_path: Path, receiver: Receiver) -> None:
    log = tmp_path / "auth.log"
    log.write_text(_line(0))
    agent = Agent(_config(tmp_path, receiver.url), "secret", create_parser)
    status = StatusServer("127.0.0.1", 0, agent.health, agent.metrics)
    await status.start()
    stop, task = await _running(agent)
    try:
        await _until(lambda: len(receiver.snapshot()) == 1)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{status.port}") as client:
            health = (await client.get("/healthz")).json()
            metrics = (await client.get("/metrics")).text
            missing = await client.get("/nothing")
    finally:
        stop.set()
        await task
        await status.aclose()
    assert health["status"] == "ok"
    assert health["api"] == "up"
    assert health["files"] == {str(log): len(_line(0))}
    assert "auditflow_agent_events_sent_total 1.0" in metrics
    assert f'auditflow_agent_lines_read_total{{path="{log}"}} 1.0' in metrics
    assert missing.status_code == 404


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(
        "api: {url: http://x}\nfiles:\n  - path: /var/log/auth.log\n    tz: Mars/Olympus\n    colour: red\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_agent_config(path)
    message = str(caught.value)
    assert "files.0.tz: Value error, unknown time zone 'Mars/Olympus'" in message
    assert "files.0.colour: unknown field 'colour'" in message
    path.write_text("api: {url: http://x}\nfiles:\n  - path: /var/log/auth.log\n    format: nginx\n")
    with pytest.raises(ConfigError, match=r"files\.0\.format: 'nginx' is not one of sshd"):
        load_agent_config(path, ("sshd",))
    path.write_text("api: [unclosed\n")
    with pytest.raises(ConfigError, match=r"agent\.yaml:2: not valid YAML"):
        load_agent_config(path)


def test_a_damaged_checkpoint_file_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.json"
    path.write_text(json.dumps({"version": 1, "files": {"/x": {"offset": 3}}}))
    with pytest.raises(ConfigError, match=r"checkpoints\.json: not a checkpoint file"):
        CheckpointFile(path).load()


def test_the_command_refuses_a_bad_configuration_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from auditflow.cli import main

    monkeypatch.delenv("AUDITFLOW_TOKEN", raising=False)
    path = tmp_path / "agent.yaml"
    path.write_text("api: {url: http://127.0.0.1:9}\nfiles: [{path: /var/log/auth.log}]\n")
    result = CliRunner().invoke(main, ["agent", "--config", str(path)])
    assert result.exit_code == 1
    assert "give token, token_file, or the AUDITFLOW_TOKEN environment variable" in result.output
    result = CliRunner().invoke(main, ["agent", "--config", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 1
    assert "missing.yaml: cannot read" in result.output


async def test_the_checkpoint_stays_before_an_audit_event_still_being_assembled(
    tmp_path: Path, receiver: Receiver
) -> None:
    # Split on newlines only: the enriched records hold 0x1D, which str.splitlines() also splits on.
    golden = [line + "\n" for line in (Path(__file__).parents[1] / "parsers/golden/auditd.log").read_text().split("\n")]
    complete = [line for line in golden if ":4631)" in line]  # a write to /etc/shadow, closed by its EOE
    held = [line for line in golden if ":4640)" in line and "type=EOE" not in line]  # its EOE is not written yet
    log = tmp_path / "audit.log"
    log.write_text("".join(complete + held))
    config = _config(tmp_path, receiver.url, files=[{"path": str(log), "format": "auditd"}])
    agent = Agent(config, "secret", create_parser)
    stop, task = await _running(agent)
    try:
        await _until(lambda: len(receiver.snapshot()) == 1)
        checkpoints = CheckpointFile(config.checkpoint_file)
        await _until(lambda: str(log) in checkpoints.load())
        # A kill -9 now must not lose the held records: reading resumes at the first of them.
        assert checkpoints.load()[str(log)].offset == len("".join(complete).encode())
    finally:
        stop.set()
        await task
    assert receiver.snapshot()[0]["details"]["resource"] == "/etc/shadow"
