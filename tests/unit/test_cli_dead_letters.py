"""`auditflow dead-letters`: the requests it makes, what it prints, and its refusals."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from auditflow.cli import main

LETTER_ID = "6f1c8e0e-3f1d-4a43-9c1e-1a2b3c4d5e6f"
LETTER = {
    "id": LETTER_ID,
    "queue": "audit_events",
    "reason": "poison: RuntimeError: detector\nfault on this event",
    "received_at": "2026-12-02T10:00:00Z",
    "headers": {},
    "body": "[]",
    "body_size": 2,
    "body_truncated": False,
}


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> list[httpx.Request]:
    """The API answered by a stub; the requests it received."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.headers["authorization"] != "Bearer good":
            return httpx.Response(401, json={"detail": "missing or invalid bearer token"})
        if request.method == "GET":
            return httpx.Response(200, json={"items": [LETTER], "total": 3, "next_cursor": "abc"})
        body = json.loads(request.content)
        count = len(body.get("ids", [])) or 3
        verb = "replayed" if request.url.path.endswith("/replay") else "purged"
        return httpx.Response(200, json={"replayed": 0, "purged": 0, verb: count, "remaining": 3 - count})

    real_client = httpx.Client

    def client(**options: Any) -> httpx.Client:
        return real_client(transport=httpx.MockTransport(answer), **options)

    monkeypatch.setattr(httpx, "Client", client)
    return seen


def run(*args: str, token: str = "good", stdin: str | None = None) -> Any:
    return CliRunner().invoke(main, ["dead-letters", *args, "--url", "http://api", "--token", token], input=stdin)


def test_list_prints_one_line_per_letter_and_the_next_cursor(server: list[httpx.Request]) -> None:
    result = run("list", "--limit", "5")
    assert result.exit_code == 0, result.output
    assert server[0].url.params["limit"] == "5"
    lines = result.output.splitlines()
    assert lines[0].startswith(
        f"{LETTER_ID}  2026-12-02T10:00:00Z  audit_events  2 B  poison: RuntimeError: detector fault"
    )
    assert lines[1:] == ["1 shown, 3 stored", "next page: --cursor abc"]


def test_list_as_json(server: list[httpx.Request]) -> None:
    result = run("list", "--json", "--cursor", "abc")
    assert server[0].url.params["cursor"] == "abc"
    assert json.loads(result.output)["items"][0]["id"] == LETTER["id"]


def test_replay_names_the_ids(server: list[httpx.Request]) -> None:
    result = run("replay", LETTER_ID)
    assert result.exit_code == 0, result.output
    assert json.loads(server[0].content) == {"ids": [LETTER_ID]}
    assert result.output == "replayed 1 dead letter(s); 2 remain\n"


def test_purge_all_asks_first(server: list[httpx.Request]) -> None:
    refused = run("purge", "--all", stdin="n\n")
    assert refused.exit_code == 1
    assert server == []
    result = run("purge", "--all", "--yes")
    assert json.loads(server[0].content) == {"all": True}
    assert result.output == "purged 3 dead letter(s); 0 remain\n"


def test_ids_or_all_is_required_and_errors_are_explained(server: list[httpx.Request]) -> None:
    neither = run("replay")
    assert neither.exit_code == 2
    assert "--all" in neither.output
    both = run("purge", LETTER_ID, "--all")
    assert both.exit_code == 2
    bad_id = run("replay", "not-a-uuid")
    assert bad_id.exit_code == 2
    assert "UUID" in bad_id.output
    denied = run("list", token="bad")
    assert denied.exit_code == 1
    assert "answered 401: missing or invalid bearer token" in denied.output
    assert server[-1].headers["authorization"] == "Bearer bad"
