"""Named API tokens with scopes: the setting's format, its errors, backward-compatible bare tokens and
their start-up warning, the constant-time lookup, and how the history names an actor."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from auditflow.app import create_app
from auditflow.config import load_settings
from auditflow.errors import ConfigError
from auditflow.runtime import Runtime
from auditflow.security import (
    ALL_SCOPES,
    ApiToken,
    Scope,
    TokenVerifier,
    acting_name,
    dashboard_token,
)

INGEST = "ingest-secret-0123456789"
DASHBOARD = "dashboard-secret-0123456789"
OLD = "bare-legacy-token-0123456789"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("AUDITFLOW_"):
            monkeypatch.delenv(name)


def test_named_entries_carry_their_scopes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AUDITFLOW_API_TOKENS", f"ingest-bot:ingest:{INGEST}, dashboard:read+triage+delegate:{DASHBOARD}"
    )
    bot, dashboard = load_settings().api_tokens
    assert (bot.name, bot.scopes, bot.bare) == ("ingest-bot", frozenset({Scope.INGEST}), False)
    assert (dashboard.name, dashboard.scopes) == ("dashboard", frozenset({Scope.READ, Scope.TRIAGE, Scope.DELEGATE}))
    assert dashboard.secret.get_secret_value() == DASHBOARD
    assert DASHBOARD not in repr(dashboard)
    assert dashboard_token([bot, dashboard]) is dashboard


def test_a_bare_token_keeps_every_scope_beside_named_ones() -> None:
    named, bare = load_settings(api_tokens=f"bot:ingest:{INGEST},{OLD}").api_tokens
    assert (bare.name, bare.scopes, bare.bare) == ("token#2", ALL_SCOPES, True)
    assert not named.bare


def test_a_yaml_file_may_list_mappings_or_strings(tmp_path: Path) -> None:
    config = tmp_path / "auditflow.yaml"
    config.write_text(
        "api_tokens:\n"
        f"  - {{name: dashboard, scopes: [read, triage, delegate], token: {DASHBOARD}}}\n"
        f"  - bot:ingest:{INGEST}\n",
        encoding="utf-8",
    )
    dashboard, bot = load_settings(config).api_tokens
    assert dashboard.scopes == {Scope.READ, Scope.TRIAGE, Scope.DELEGATE}
    assert (bot.name, bot.scopes) == ("bot", frozenset({Scope.INGEST}))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            f"bot:ingest:{INGEST},dash:read+trage:{DASHBOARD}",
            r"token #2 \(dash\): unknown scope 'trage'; known: ingest",
        ),
        (f"bot::{INGEST}", r"token #1 \(bot\): give at least one scope"),
        (f"bot:ingest:{INGEST},bot:read:{DASHBOARD}", r"token #2: the name 'bot' is already used by token #1"),
        (f"a:ingest:{INGEST},b:read:{INGEST}", r"token #2 \(b\) repeats the secret of token #1"),
        ("bot:ingest:short", r"token #1 \(bot\) is shorter than 16 characters"),
        (f"bad name:ingest:{INGEST}", r"token #1: the name must be 1-64 letters"),
        (f"bot:{INGEST}", r"token #1: expected `name:scope\+scope:token` or a bare token"),
    ],
)
def test_bad_entries_are_named_without_their_secret(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"api_tokens: .*{message}") as caught:
        load_settings(api_tokens=value)
    assert INGEST not in str(caught.value)
    assert DASHBOARD not in str(caught.value)


def test_the_dashboards_token_for_the_alerts_api_must_be_strong() -> None:
    with pytest.raises(ConfigError, match=r"alerts_api_token: .*shorter than 16"):
        load_settings(alerts_api_token="short")


def test_the_verifier_finds_the_matching_token_only() -> None:
    tokens = load_settings(api_tokens=f"bot:ingest:{INGEST},{OLD}").api_tokens
    verifier = TokenVerifier(tokens)
    assert verifier.identify(INGEST) is tokens[0]
    assert verifier.identify(OLD) is tokens[1]
    assert verifier.identify(INGEST[:-1]) is None
    assert verifier.identify("") is None
    assert not TokenVerifier([]).configured


def test_the_history_names_the_token_and_the_delegated_user() -> None:
    token = ApiToken(name="dashboard", scopes=frozenset({Scope.DELEGATE}), secret=SecretStr(DASHBOARD))
    assert acting_name(token) == "dashboard"
    assert acting_name(token, "ana") == "ana via dashboard"
    assert acting_name(token, "<b>" + "x" * 100) == "_b_" + "x" * 61 + " via dashboard"


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "auditflow.security" and r.levelno == logging.WARNING]


async def test_bare_tokens_are_warned_about_once_and_still_work(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings(data_dir=tmp_path, generator_rate=0, api_tokens=f"{OLD},bot:ingest:{INGEST},{OLD}x")
    runtime = Runtime(settings, "run")
    with caplog.at_level(logging.WARNING, logger="auditflow.security"):
        app = create_app(runtime, settings.api_tokens, manage_lifecycle=False)
        await runtime.start()
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                for secret in (OLD, f"{OLD}x", OLD):
                    answer = await client.get("/api/v1/admin/log-level", headers={"Authorization": f"Bearer {secret}"})
                    assert answer.status_code == 200, answer.text
        finally:
            await runtime.aclose()
    [warning] = _warnings(caplog)
    assert "token#1, token#3 have no name or scopes" in warning
    assert OLD not in warning


def test_named_and_generated_tokens_are_not_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    runtime = Runtime(load_settings(data_dir=tmp_path, generator_rate=0), "run")
    named = load_settings(api_tokens=f"bot:ingest:{INGEST}").api_tokens
    with caplog.at_level(logging.WARNING, logger="auditflow.security"):
        create_app(runtime, named, manage_lifecycle=False)
        create_app(runtime, [ApiToken.operator(OLD)], manage_lifecycle=False)
    assert _warnings(caplog) == []
