"""`auditflow dead-letters list|replay|purge`: the dead letters of a running pipeline, through its
API (`/api/v1/dead-letters`), so that the command works the same against the embedded process and
against a distributed notification service."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
import httpx

from auditflow.model.dead_letter import DeadLetterPage, DeadLetterResult

URL_OPTION = click.option(
    "--url",
    envvar="AUDITFLOW_URL",
    default="http://127.0.0.1:8080",
    show_default=True,
    help="Base URL of the process serving the alerts API: `run` or `serve notification` (env AUDITFLOW_URL).",
)
TOKEN_OPTION = click.option(
    "--token", envvar="AUDITFLOW_TOKEN", required=True, help="Bearer token (env AUDITFLOW_TOKEN)."
)
IDS_ARGUMENT = click.argument("ids", nargs=-1, type=click.UUID)
ALL_OPTION = click.option("--all", "everything", is_flag=True, help="Every stored dead letter.")
REASON_WIDTH = 70


def _call(url: str, token: str, method: str, path: str, **request: Any) -> Any:
    try:
        with httpx.Client(base_url=url.rstrip("/"), headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
            response = http.request(method, f"/api/v1/dead-letters{path}", **request)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach {url}: {exc}") from None
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise click.ClickException(f"{method} {path or '/'} answered {response.status_code}: {detail}")
    return response.json()


def _selection(ids: tuple[Any, ...], everything: bool) -> dict[str, Any]:
    if ids and everything:
        raise click.UsageError("name dead letters or pass --all, not both")
    if not ids and not everything:
        raise click.UsageError("name the dead letters (ids from `auditflow dead-letters list`) or pass --all")
    return {"ids": [str(i) for i in ids]} if ids else {"all": True}


def _one_line(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


@click.group("dead-letters")
def dead_letters() -> None:
    """Messages and events the pipeline could not process: list, replay or purge them.

    A dead letter keeps the queue it came from and the reason. Replay publishes it to that queue
    again (after a fix) and removes it once the broker confirmed; purge deletes it for good.
    """


@dead_letters.command("list")
@URL_OPTION
@TOKEN_OPTION
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True, help="Dead letters per page.")
@click.option("--cursor", help="Continue after a previous page (printed at its end).")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON page instead of a table.")
def list_command(url: str, token: str, limit: int, cursor: str | None, as_json: bool) -> None:
    """List dead letters, newest first."""
    params: dict[str, Any] = {"limit": limit} | ({"cursor": cursor} if cursor else {})
    raw = _call(url, token, "GET", "", params=params)
    if as_json:
        click.echo(DeadLetterPage.model_validate(raw).model_dump_json(indent=2))
        return
    page = DeadLetterPage.model_validate(raw)
    for letter in page.items:
        received = letter.received_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        reason = _one_line(letter.reason, REASON_WIDTH)
        click.echo(f"{letter.id}  {received}  {letter.queue}  {letter.body_size} B  {reason}")
    click.echo(f"{len(page.items)} shown, {page.total} stored")
    if page.next_cursor:
        click.echo(f"next page: --cursor {page.next_cursor}")


def _report(result: DeadLetterResult, verb: str, count: Callable[[DeadLetterResult], int]) -> None:
    click.echo(f"{verb} {count(result)} dead letter(s); {result.remaining} remain")


@dead_letters.command("replay")
@URL_OPTION
@TOKEN_OPTION
@IDS_ARGUMENT
@ALL_OPTION
def replay_command(url: str, token: str, ids: tuple[Any, ...], everything: bool) -> None:
    """Publish dead letters again to the queue they came from (IDS, or --all)."""
    raw = _call(url, token, "POST", "/replay", json=_selection(ids, everything))
    _report(DeadLetterResult.model_validate(raw), "replayed", lambda r: r.replayed)


@dead_letters.command("purge")
@URL_OPTION
@TOKEN_OPTION
@IDS_ARGUMENT
@ALL_OPTION
@click.option("--yes", is_flag=True, help="Do not ask before purging every dead letter.")
def purge_command(url: str, token: str, ids: tuple[Any, ...], everything: bool, yes: bool) -> None:
    """Delete dead letters for good (IDS, or --all)."""
    selection = _selection(ids, everything)
    if everything and not yes:
        click.confirm("Delete every stored dead letter for good?", abort=True)
    raw = _call(url, token, "POST", "/purge", json=selection)
    _report(DeadLetterResult.model_validate(raw), "purged", lambda r: r.purged)
