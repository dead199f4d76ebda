"""File modes of what the services write: a 0700 data directory, 0600 secrets and SQLite files, whatever
the umask, and loose modes left by an earlier version tightened on start."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from auditflow import cli
from auditflow.backends.store.engine import create_sync_engine
from auditflow.config import Settings
from auditflow.security import ensure_api_token
from auditflow.services.dashboard.users import ensure_dashboard_users


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    # The common default: without explicit modes, directories come out 0755 and files 0644.
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_generated_token_creates_a_private_data_directory(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ensure_api_token(data)
    assert mode(data) == 0o700
    assert mode(data / "api-token") == 0o600


def test_an_existing_world_readable_data_directory_is_restricted(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    ensure_dashboard_users(Settings(data_dir=data))
    assert mode(data) == 0o700
    other = tmp_path / "other"
    other.mkdir()
    other.chmod(0o750)
    ensure_api_token(other)
    assert mode(other) == 0o700


def test_sqlite_database_and_its_wal_are_private(tmp_path: Path) -> None:
    path = tmp_path / "new" / "alerts.sqlite3"
    engine = create_sync_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("CREATE TABLE t (x INTEGER)"))
            connection.execute(sa.text("INSERT INTO t VALUES (1)"))
            assert mode(path) == 0o600
            assert mode(path.with_name(path.name + "-wal")) == 0o600
    finally:
        engine.dispose()
    assert mode(path.parent) == 0o700


def test_an_existing_sqlite_file_is_restricted(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    path = shared / "alerts.sqlite3"
    path.touch()
    path.chmod(0o644)
    create_sync_engine(f"sqlite:///{path}").dispose()
    assert mode(path) == 0o600
    assert mode(shared) == 0o755, "a directory the operator made is left alone"


def test_run_restricts_its_data_directory_before_starting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o755)
    monkeypatch.setattr(cli, "_serve_process", lambda settings, service: 0)
    result = CliRunner().invoke(cli.main, ["run", "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    assert mode(data) == 0o700


def test_run_names_an_unwritable_data_directory_and_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # As in a container whose tmpfs over the data directory belongs to root: the check runs as the user the
    # process is; root may write anywhere, so the refusal is simulated through os.access.
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda path, how: not how & os.W_OK and real_access(path, how) if Path(path) == data else True
    )
    monkeypatch.setattr(cli, "_serve_process", lambda settings, service: pytest.fail("started anyway"))
    result = CliRunner().invoke(cli.main, ["run", "--data-dir", str(data)])
    assert result.exit_code == 1
    assert f"data directory {data}: not writable by uid {os.geteuid()}" in result.output
    assert f"--tmpfs {data}:uid={os.geteuid()},gid={os.getegid()},mode=0700" in result.output
    assert "AUDITFLOW_DATA_DIR" in result.output
