"""scripts/gen-secrets: fresh, strong, URL-safe credentials in the format compose and Kustomize read, a
working dashboard login, and no silent rotation of an existing file."""

from __future__ import annotations

import re
from pathlib import Path

from argon2 import PasswordHasher

from auditflow.services.dashboard.users import parse_user_entries
from tests.deploy.conftest import generate_secrets, read_env_file

KEYS = [
    "POSTGRES_PASSWORD",
    "RABBITMQ_PASSWORD",
    "REDIS_PASSWORD",
    "OPERATOR_API_TOKEN",
    "INGEST_API_TOKEN",
    "DASHBOARD_API_TOKEN",
    "SOC_WEBHOOK_SECRET",
    "AUDITFLOW_SESSION_SECRET",
    "AUDITFLOW_DASHBOARD_USERS",
]
COMPOSE_KEYS = [*KEYS, "GRAFANA_ADMIN_PASSWORD"]  # Grafana runs only in compose's `monitoring` profile


def test_k8s_file_has_every_key_with_strong_url_safe_values(tmp_path: Path) -> None:
    result = generate_secrets("k8s", tmp_path)
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "secrets.env").read_text(encoding="utf-8")
    assert "'" not in text, "Kustomize keeps quotes as part of the value"
    values = read_env_file(tmp_path / "secrets.env")
    assert list(values) == KEYS
    for key in KEYS[:-1]:
        assert re.fullmatch(r"[A-Za-z0-9_-]{32,}", values[key]), key
    assert (tmp_path / "secrets.env").stat().st_mode & 0o077 == 0


def _printed_login(output: str) -> tuple[str, str]:
    found = re.search(r"dashboard login (\S+) / (\S+) ", output)
    assert found is not None, output
    return found.group(1), found.group(2)


def test_printed_dashboard_login_matches_the_hash_and_is_not_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    result = generate_secrets("compose", "--output", path)
    assert result.returncode == 0
    text = path.read_text(encoding="utf-8")
    user, password = _printed_login(result.stdout)
    assert password not in text, "the clear-text password must not be written into the file"
    entry = read_env_file(path)["AUDITFLOW_DASHBOARD_USERS"]
    assert re.search(r"^AUDITFLOW_DASHBOARD_USERS='[^']+'$", text, re.MULTILINE), "compose values are single-quoted"
    # The argon2 hash holds commas: the dashboard must read it as one entry from the comma-separated setting.
    directory = parse_user_entries(entry.split(","))
    assert len(directory) == 1
    name, role, digest = entry.split(":", 2)
    assert (name, role) == (user, "analyst")
    assert PasswordHasher().verify(digest, password)


def test_every_run_generates_new_values(tmp_path: Path) -> None:
    first, second = tmp_path / "a.env", tmp_path / "b.env"
    assert generate_secrets("compose", "--output", first).returncode == 0
    assert generate_secrets("compose", "--output", second).returncode == 0
    a, b = read_env_file(first), read_env_file(second)
    assert all(a[key] != b[key] for key in COMPOSE_KEYS)


def test_existing_file_is_kept_unless_forced(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    assert generate_secrets("compose", "--output", path).returncode == 0
    before = path.read_text(encoding="utf-8")
    refused = generate_secrets("compose", "--output", path)
    assert refused.returncode == 1
    assert "--force" in refused.stderr
    assert path.read_text(encoding="utf-8") == before
    assert generate_secrets("compose", "--output", path, "--force").returncode == 0
    assert path.read_text(encoding="utf-8") != before


def test_standard_output_mode_prints_the_login_on_standard_error() -> None:
    result = generate_secrets("compose", "--output", "-")
    assert result.returncode == 0
    _, password = _printed_login(result.stderr)
    assert password not in result.stdout
    assert "AUDITFLOW_DASHBOARD_USERS=" in result.stdout


def test_forced_rotation_resets_a_loose_file_mode(tmp_path: Path) -> None:
    path = tmp_path / "secrets.env"
    path.write_text("OLD=1\n", encoding="utf-8")
    path.chmod(0o644)
    assert generate_secrets("k8s", tmp_path, "--force").returncode == 0
    assert path.stat().st_mode & 0o777 == 0o600
    assert "OLD=1" not in path.read_text(encoding="utf-8")
    assert [p.name for p in tmp_path.iterdir()] == ["secrets.env"], "no temporary file left behind"


def test_k8s_without_an_overlay_is_a_usage_error() -> None:
    result = generate_secrets("k8s")
    assert result.returncode == 2
    assert "overlay" in result.stderr


def test_compose_file_has_a_strong_grafana_password_and_the_k8s_file_none(tmp_path: Path) -> None:
    assert generate_secrets("compose", "--output", tmp_path / ".env").returncode == 0
    values = read_env_file(tmp_path / ".env")
    assert list(values) == COMPOSE_KEYS
    assert re.fullmatch(r"[A-Za-z0-9_-]{32,}", values["GRAFANA_ADMIN_PASSWORD"])
    assert generate_secrets("k8s", tmp_path).returncode == 0
    assert "GRAFANA_ADMIN_PASSWORD" not in read_env_file(tmp_path / "secrets.env")


def test_add_missing_appends_new_keys_and_keeps_every_existing_value(tmp_path: Path) -> None:
    """An .env from before the monitoring profile gains the Grafana password; no credential changes."""
    path = tmp_path / ".env"
    assert generate_secrets("compose", "--output", path).returncode == 0
    old = "".join(line + "\n" for line in path.read_text(encoding="utf-8").splitlines() if "GRAFANA" not in line)
    path.write_text(old, encoding="utf-8")
    path.chmod(0o644)
    result = generate_secrets("compose", "--output", path, "--add-missing")
    assert result.returncode == 0, result.stderr
    assert "added GRAFANA_ADMIN_PASSWORD" in result.stdout
    text = path.read_text(encoding="utf-8")
    assert text.startswith(old)
    values = read_env_file(path)
    assert list(values) == COMPOSE_KEYS
    assert re.fullmatch(r"[A-Za-z0-9_-]{32,}", values["GRAFANA_ADMIN_PASSWORD"])
    assert path.stat().st_mode & 0o777 == 0o600
    again = generate_secrets("compose", "--output", path, "--add-missing")
    assert again.returncode == 0
    assert "has every key" in again.stdout
    assert path.read_text(encoding="utf-8") == text


def test_add_missing_without_a_file_writes_a_new_one_and_refuses_force(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    assert generate_secrets("compose", "--output", path, "--add-missing").returncode == 0
    assert list(read_env_file(path)) == COMPOSE_KEYS
    refused = generate_secrets("compose", "--output", path, "--add-missing", "--force")
    assert refused.returncode == 2
    assert "--add-missing" in refused.stderr
