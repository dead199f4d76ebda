"""Dashboard accounts: `name:role:hash` parsing, the generated admin, and the password stamp."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from auditflow.config import Settings
from auditflow.errors import ConfigError
from auditflow.services.dashboard import users
from auditflow.services.dashboard.users import (
    USERS_FILE,
    Role,
    ensure_dashboard_users,
    hash_password,
    parse_user_entries,
    user_entry,
)

CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
HASH = CHEAP.hash("pw-ana")


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hash new passwords with cheap parameters: the code paths are the same, the tests much faster."""
    monkeypatch.setattr(users, "_hasher", CHEAP)


def test_entries_from_the_environment_survive_the_comma_split(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The hash holds commas (m=...,t=...,p=...) and the setting is split on commas.
    assert "," in HASH
    monkeypatch.setenv("AUDITFLOW_DASHBOARD_USERS", f"ana:analyst:{HASH},vic:viewer:{CHEAP.hash('pw-vic')}")
    directory, password = ensure_dashboard_users(Settings(data_dir=tmp_path))
    assert password is None
    assert len(directory) == 2
    ana = directory.authenticate("ana", "pw-ana")
    assert ana is not None
    assert ana.role is Role.ANALYST
    assert ana.can_triage
    vic = directory.authenticate("vic", "pw-vic")
    assert vic is not None
    assert not vic.can_triage
    assert not (tmp_path / USERS_FILE).exists()


def test_wrong_password_and_unknown_user_fail_alike() -> None:
    directory = parse_user_entries([f"ana:analyst:{HASH}"])
    assert directory.authenticate("ana", "nope") is None
    assert directory.authenticate("bob", "pw-ana") is None
    assert directory.authenticate("ana", "") is None


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("bob", "expected name:role:argon2-hash"),
        (f"bob:admin:{HASH}", "role must be viewer or analyst"),
        ("bob:viewer:plaintext-password", "must be an argon2 hash"),
        ("bob:viewer:$argon2id$v=19$garbage", "malformed"),
        (f"bad name:viewer:{HASH}", "user name"),
        (f"ana:viewer:{HASH}", "defined twice"),
    ],
)
def test_bad_entries_name_their_index_and_never_the_hash(entry: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_user_entries([f"ana:analyst:{HASH}", entry])
    text = str(caught.value)
    assert "entry #2" in text
    assert message in text
    assert "$argon2" not in text
    assert "plaintext-password" not in text


def test_first_run_generates_an_admin_once(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    directory, password = ensure_dashboard_users(settings)
    assert password is not None
    assert len(password) >= 20
    path = tmp_path / "data" / USERS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert password not in path.read_text()
    admin = directory.authenticate("admin", password)
    assert admin is not None
    assert admin.role is Role.ANALYST

    again, second = ensure_dashboard_users(settings)
    assert second is None
    assert again.authenticate("admin", password) is not None


def test_an_emptied_users_file_is_an_error_not_an_open_door(tmp_path: Path) -> None:
    (tmp_path / USERS_FILE).write_text("\n")
    with pytest.raises(ConfigError, match="holds no user"):
        ensure_dashboard_users(Settings(data_dir=tmp_path))


def test_hash_helpers_produce_valid_entries() -> None:
    entry = user_entry("carol", "viewer", "pw-carol")
    directory = parse_user_entries([entry])
    assert directory.authenticate("carol", "pw-carol") is not None
    assert hash_password("x").startswith("$argon2id$")
    with pytest.raises(ValueError, match="empty"):
        hash_password("")
    with pytest.raises(ConfigError):
        user_entry("carol", "root", "pw")


def test_the_stamp_changes_with_the_password_hash() -> None:
    first = parse_user_entries([f"ana:analyst:{HASH}"]).get("ana")
    again = parse_user_entries([f"ana:viewer:{HASH}"]).get("ana")
    # The same password hashed again gets a new salt, so re-setting it also ends old sessions.
    renewed = parse_user_entries([f"ana:analyst:{CHEAP.hash('pw-ana')}"]).get("ana")
    assert first is not None
    assert again is not None
    assert renewed is not None
    assert first.stamp == again.stamp
    assert first.stamp != renewed.stamp
    assert HASH not in first.stamp


def test_private_files_are_created_once_without_leftovers(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    assert users._write_private(path, "first\n")
    assert not users._write_private(path, "second\n")
    assert path.read_text() == "first\n"
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]
