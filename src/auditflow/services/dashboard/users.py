"""Dashboard accounts: `name:role:argon2-hash` entries from the settings, or a generated `admin` analyst
whose password is stored hashed in the data directory and shown once."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from auditflow.config import Settings
from auditflow.errors import ConfigError
from auditflow.filemodes import ensure_private_dir

USERS_FILE = "dashboard-users"
DEFAULT_ADMIN = "admin"
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_HASH_CONTINUATION = re.compile(r"^[tp]=\d+(\$|$)")
_hasher = PasswordHasher()
# Verified when the user name is unknown, so that a wrong name costs as much time as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class Role(StrEnum):
    VIEWER = "viewer"
    ANALYST = "analyst"


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: Role
    password_hash: str

    @property
    def can_triage(self) -> bool:
        return self.role is Role.ANALYST

    @property
    def stamp(self) -> str:
        """Changes with the password: stored with each session, so a new password ends the old
        sessions on every replica (the hash is salted, so even re-setting the same password does)."""
        return hashlib.sha256(self.password_hash.encode()).hexdigest()[:32]


class UserDirectory:
    """The accounts allowed to sign in to the dashboard."""

    def __init__(self, users: Iterable[User]) -> None:
        self._users = {user.name: user for user in users}

    def __len__(self) -> int:
        return len(self._users)

    def get(self, name: str) -> User | None:
        return self._users.get(name)

    def authenticate(self, name: str, password: str) -> User | None:
        """The user when the password matches, else None; unknown names take the same time."""
        user = self._users.get(name)
        try:
            _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            return None
        return user


def hash_password(password: str) -> str:
    """An argon2id hash for the `name:role:hash` entries of `AUDITFLOW_DASHBOARD_USERS`."""
    if not password:
        raise ValueError("the password must not be empty")
    return _hasher.hash(password)


def user_entry(name: str, role: str, password: str) -> str:
    """One complete `name:role:hash` entry, validated like the settings are."""
    entry = f"{name}:{role}:{hash_password(password)}"
    parse_user_entries([entry])
    return entry


def _rejoin(entries: Iterable[str]) -> list[str]:
    # Settings split the variable on commas, and an argon2 hash contains some (`m=65536,t=3,p=4`):
    # a `t=...` or `p=...` fragment is the continuation of the previous entry's hash.
    joined: list[str] = []
    for fragment in entries:
        if joined and _HASH_CONTINUATION.match(fragment):
            joined[-1] = f"{joined[-1]},{fragment}"
        else:
            joined.append(fragment)
    return joined


def parse_user_entries(entries: Iterable[str], *, origin: str = "dashboard_users") -> UserDirectory:
    """Parse `name:role:hash` entries; a bad one raises ConfigError naming its index, never its hash."""
    users: list[User] = []
    seen: set[str] = set()
    for index, entry in enumerate(_rejoin(e.strip() for e in entries if e.strip()), start=1):
        where = f"{origin} entry #{index}"
        parts = entry.split(":", 2)
        if len(parts) != 3:
            raise ConfigError(f"{where}: expected name:role:argon2-hash")
        name, role, password_hash = parts
        if not _NAME.match(name):
            raise ConfigError(f"{where}: the user name must be 1-64 letters, digits or _.@-")
        if role not in Role.__members__.values():
            raise ConfigError(f"{where} ({name}): role must be viewer or analyst")
        if not password_hash.startswith("$argon2"):
            raise ConfigError(
                f"{where} ({name}): the password must be an argon2 hash (auditflow dashboard hash-password)"
            )
        try:
            _hasher.check_needs_rehash(password_hash)
        except (InvalidHashError, ValueError):
            raise ConfigError(f"{where} ({name}): the argon2 hash is malformed") from None
        if name in seen:
            raise ConfigError(f"{where}: user {name} is defined twice")
        seen.add(name)
        users.append(User(name=name, role=Role(role), password_hash=password_hash))
    return UserDirectory(users)


def _write_private(path: Path, text: str) -> bool:
    """Create `path` with mode 0600 and `text`; False when it already exists (another process was first).

    Written to a temporary name and hard-linked into place, so a concurrent reader (a second replica
    starting on the same volume) never sees a half-written file."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(temporary, path)
    except FileExistsError:
        return False
    finally:
        temporary.unlink()
    return True


def ensure_dashboard_users(settings: Settings) -> tuple[UserDirectory, str | None]:
    """The dashboard's users, and the generated admin password when it was created just now.

    The plaintext is returned only by the run that creates `<data_dir>/dashboard-users`, so the
    caller can print it once; it is never stored or logged.
    """
    if settings.dashboard_users:
        values = [secret.get_secret_value() for secret in settings.dashboard_users]
        directory = parse_user_entries(values)
        if len(directory) == 0:
            raise ConfigError("dashboard_users is set but holds no entry")
        return directory, None
    path = settings.data_dir / USERS_FILE
    ensure_private_dir(path.parent)
    password: str | None = None
    if not path.exists():
        candidate = secrets.token_urlsafe(18)
        if _write_private(path, f"{DEFAULT_ADMIN}:{Role.ANALYST}:{hash_password(candidate)}\n"):
            password = candidate
    directory = parse_user_entries(path.read_text(encoding="utf-8").splitlines(), origin=str(path))
    if len(directory) == 0:
        raise ConfigError(f"{path} holds no user; delete it to generate a new admin password")
    return directory, password
