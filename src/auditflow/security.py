"""Secrets the embedded mode creates on first start (API token), stored 0600 in the data directory,
and the constant-time token check used by the API."""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

TOKEN_FILE = "api-token"  # noqa: S105 - a file name, not a secret


def write_secret_file(path: Path, value: str) -> None:
    """Create `path` with mode 0600 from the start (no window where it is world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
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
    """Checks bearer tokens in constant time against every configured token."""

    def __init__(self, tokens: list[str]) -> None:
        self._tokens = [token.encode() for token in tokens]

    @property
    def configured(self) -> bool:
        return bool(self._tokens)

    def index_of(self, candidate: str) -> int | None:
        """1-based index of the matching token (for audit trails), or None. Every token is compared,
        so the time taken does not reveal which one matched or how much of it."""
        given = candidate.encode()
        found: int | None = None
        for index, token in enumerate(self._tokens, start=1):
            if hmac.compare_digest(given, token) and found is None:
                found = index
        return found
