"""API tokens and what they may do: named tokens with scopes parsed from the settings, the
constant-time token check used by the API, the acting user a trusted front end may name, and the
token the embedded mode creates on first start (stored 0600 in the 0700 data directory)."""

from __future__ import annotations

import enum
import hmac
import logging
import os
import re
import secrets
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr

from auditflow.filemodes import ensure_private_dir

TOKEN_FILE = "api-token"  # noqa: S105 - a file name, not a secret  # nosec B105
MIN_TOKEN_LENGTH = 16
ACTOR_HEADER = "X-AuditFlow-Actor"

log = logging.getLogger("auditflow.security")

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_ACTOR_UNSAFE = re.compile(r"[^A-Za-z0-9_.@:-]")


class Scope(enum.StrEnum):
    """What a token may do; each API route needs exactly one of the first four."""

    INGEST = "ingest"  # submit events
    READ = "read"  # alerts, statistics, rules, generator settings
    TRIAGE = "triage"  # change an alert's status, add notes
    ADMIN = "admin"  # log level, generator control, dead-letter replay and purge
    DELEGATE = "delegate"  # name the acting user (X-AuditFlow-Actor): the dashboard's token


ALL_SCOPES = frozenset(Scope)
# What the dashboard does with its token: read alerts, triage them on behalf of its signed-in users.
DASHBOARD_SCOPES = frozenset({Scope.READ, Scope.TRIAGE, Scope.DELEGATE})


class ApiToken(BaseModel):
    """One accepted bearer token. `bare` marks a configured token without name or scopes, which keeps
    every scope so that configurations from before scopes keep working."""

    model_config = ConfigDict(frozen=True)

    name: str
    scopes: frozenset[Scope]
    secret: SecretStr
    bare: bool = False

    @classmethod
    def operator(cls, secret: str, *, number: int = 1) -> ApiToken:
        """A token with every scope that nobody configured by hand (the generated one)."""
        return cls(name=f"token#{number}", scopes=ALL_SCOPES, secret=SecretStr(secret))


def parse_api_tokens(value: Any) -> Any:
    """`AUDITFLOW_API_TOKENS` as written by people: a comma-separated string (or a YAML list) of
    `name:scope+scope:token` entries or bare tokens, or YAML mappings `{name, scopes, token}`.
    Errors name the entry by position and name, never by its secret."""
    if isinstance(value, str):
        value = [item.strip() for item in value.split(",") if item.strip()]
    if not isinstance(value, list | tuple):
        return value  # pydantic names the wrong type
    tokens = [_parse_entry(item, number) for number, item in enumerate(value, start=1)]
    _refuse_duplicates(tokens)
    return tokens


def _parse_entry(item: Any, number: int) -> ApiToken:
    if isinstance(item, ApiToken):
        return item
    if isinstance(item, SecretStr):
        item = item.get_secret_value()
    if isinstance(item, dict):
        unknown = set(item) - {"name", "scopes", "token"}
        if unknown:
            raise ValueError(f"token #{number}: unknown keys {', '.join(sorted(map(str, unknown)))}")
        name, scopes, secret = item.get("name"), item.get("scopes"), item.get("token")
    elif isinstance(item, str):
        if ":" not in item:
            return _checked(number, f"token#{number}", list(ALL_SCOPES), item, bare=True)
        parts = item.split(":", 2)
        if len(parts) != 3:
            raise ValueError(f"token #{number}: expected `name:scope+scope:token` or a bare token without `:`")
        name, scopes, secret = parts
    else:
        raise ValueError(f"token #{number}: expected a string or a mapping with name, scopes and token")
    return _checked(number, name, scopes, secret, bare=False)


def _checked(number: int, name: Any, scopes: Any, secret: Any, *, bare: bool) -> ApiToken:
    if not isinstance(name, str) or (not bare and not _NAME.fullmatch(name)):
        raise ValueError(
            f"token #{number}: the name must be 1-64 letters, digits, `_`, `.` or `-`, starting with a letter or digit"
        )
    label = f"token #{number}" if bare else f"token #{number} ({name})"
    if isinstance(scopes, str):
        scopes = [scope.strip() for scope in scopes.split("+") if scope.strip()]
    if not isinstance(scopes, list | tuple | frozenset | set) or not scopes:
        raise ValueError(f"{label}: give at least one scope ({_known()})")
    unknown = sorted(str(s) for s in scopes if s not in ALL_SCOPES)
    if unknown:
        raise ValueError(f"{label}: unknown scope {', '.join(map(repr, unknown))}; known: {_known()}")
    if not isinstance(secret, str) or len(secret) < MIN_TOKEN_LENGTH:
        raise ValueError(f"{label} is shorter than {MIN_TOKEN_LENGTH} characters")
    return ApiToken(name=name, scopes=frozenset(Scope(s) for s in scopes), secret=SecretStr(secret), bare=bare)


def _known() -> str:
    return ", ".join(scope.value for scope in Scope)


def _refuse_duplicates(tokens: Sequence[ApiToken]) -> None:
    names: dict[str, int] = {}
    values: dict[str, int] = {}
    for number, token in enumerate(tokens, start=1):
        if token.name in names:
            raise ValueError(f"token #{number}: the name {token.name!r} is already used by token #{names[token.name]}")
        secret = token.secret.get_secret_value()
        if secret in values:
            # The same secret with two names would make the history and the scopes ambiguous.
            raise ValueError(f"token #{number} ({token.name}) repeats the secret of token #{values[secret]}")
        names[token.name] = values[secret] = number


def warn_about_bare_tokens(tokens: Iterable[ApiToken]) -> None:
    """One start-up warning for every configured token that has no name and therefore every scope."""
    bare = [token.name for token in tokens if token.bare]
    if bare:
        log.warning(
            "AUDITFLOW_API_TOKENS: %s %s no name or scopes and may do everything (%s); give each client its "
            "own `name:scope+scope:token` entry with only the scopes it needs",
            ", ".join(bare),
            "has" if len(bare) == 1 else "have",
            _known(),
        )


def dashboard_token(tokens: Iterable[ApiToken]) -> ApiToken | None:
    """The first token that may do what the dashboard does (read, triage, name its user)."""
    return next((token for token in tokens if token.scopes >= DASHBOARD_SCOPES), None)


def acting_name(token: ApiToken, on_behalf: str | None = None) -> str:
    """How the history names a change: the token, or the user a delegating front end named."""
    if not on_behalf:
        return token.name
    return f"{_ACTOR_UNSAFE.sub('_', on_behalf)[:64]} via {token.name}"


def write_secret_file(path: Path, value: str) -> None:
    """Create `path` with mode 0600 from the start (no window where it is world-readable)."""
    ensure_private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")


def ensure_api_token(data_dir: Path) -> tuple[str, bool]:
    """The token stored in the data directory, generated on first use. Returns (token, created)."""
    path = data_dir / TOKEN_FILE
    if path.exists():
        return path.read_text(encoding="utf-8").strip(), False
    token = secrets.token_urlsafe(32)
    write_secret_file(path, token)
    return token, True


class TokenVerifier:
    """Finds the configured token a bearer credential matches, in constant time."""

    def __init__(self, tokens: Sequence[ApiToken]) -> None:
        self._tokens = [(token.secret.get_secret_value().encode(), token) for token in tokens]

    @property
    def configured(self) -> bool:
        return bool(self._tokens)

    def identify(self, candidate: str) -> ApiToken | None:
        """The matching token, or None. Every token is compared, so the time taken does not reveal
        which one matched or how much of it."""
        given = candidate.encode()
        found: ApiToken | None = None
        for secret, token in self._tokens:
            if hmac.compare_digest(given, secret) and found is None:
                found = token
        return found
