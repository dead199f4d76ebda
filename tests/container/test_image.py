"""The built image itself: its size within budget, its metadata, and its default command (`auditflow run`)
started as compose starts the services: read-only, no capabilities, the data directory on a tmpfs."""

from __future__ import annotations

import json

import httpx
import pytest

from auditflow.bench.processes import free_port
from tests.container.conftest import Containers, assert_locked_down, docker

pytestmark = [pytest.mark.container, pytest.mark.slow, pytest.mark.timeout(1500)]

MB = 1_000_000
# On the debootstrap stand-in base (about 190 MB); the official slim base is a little smaller.
IMAGE_BUDGET = 450 * MB
# What the Dockerfile adds to the base: the venv with every dependency, the user and the data directory.
APP_LAYERS_BUDGET = 200 * MB
# The HEALTHCHECK's start period plus two intervals: the first check after start comes one interval in.
HEALTHY_WITHIN = 60.0
GRACE = 20  # compose.yaml's stop_grace_period


def test_image_size_and_metadata_are_as_documented(image: str) -> None:
    info = json.loads(docker("image", "inspect", image).stdout)[0]
    base = info["Config"]["Labels"]["org.auditflow.test.base"]
    base_size = json.loads(docker("image", "inspect", base).stdout)[0]["Size"]
    print(f"\nimage {image}: {info['Size'] / MB:.0f} MB, of which the base {base} {base_size / MB:.0f} MB")
    assert info["Size"] < IMAGE_BUDGET
    assert info["Size"] - base_size < APP_LAYERS_BUDGET
    config = info["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["auditflow"]
    assert config["Cmd"] == ["run", "--host", "0.0.0.0"]
    assert config["Env"].count("AUDITFLOW_DATA_DIR=/var/lib/auditflow") == 1
    assert "/healthz" in " ".join(config["Healthcheck"]["Test"])
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == "auditflow"
    assert len(labels["org.opencontainers.image.revision"]) == 40
    # No pip in the runtime venv, no build secret left in any layer.
    probe = docker(
        "run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c",
        "test ! -e /opt/auditflow/bin/pip && test ! -e /run/secrets/ca && ls /wheels 2>&1; echo ok",
    )  # fmt: skip
    assert probe.stdout.strip().endswith("ok")
    assert "No such file" in probe.stdout


def test_default_command_turns_healthy_and_stops_with_exit_0(image: str, containers: Containers) -> None:
    port = free_port()
    # The image's CMD unchanged (`run --host 0.0.0.0`); the port comes from the settings, which the
    # HEALTHCHECK reads too.
    container = containers.run(image, "run", [], env={"AUDITFLOW_PORT": str(port), "AUDITFLOW_GENERATOR_RATE": "0"})
    container.wait_healthy(HEALTHY_WITHIN)
    assert_locked_down(container)
    assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    logs = container.logs()
    assert "API token (shown once" in logs
    # The secrets were written to the tmpfs, private to the user.
    listing = docker("exec", container.name, "ls", "-ln", "/var/lib/auditflow").stdout
    for secret in ("api-token", "dashboard-users"):
        assert any(line.split()[2:4] == ["10001", "10001"] for line in listing.splitlines() if secret in line)
    mode = docker("exec", container.name, "stat", "-c", "%a %u", "/var/lib/auditflow").stdout.split()
    assert mode == ["700", "10001"]
    code, seconds = container.stop(GRACE)
    assert code == 0, container.logs()
    assert seconds < GRACE


def test_a_data_directory_owned_by_root_stops_the_start_with_the_fix_named(image: str, containers: Containers) -> None:
    # A tmpfs without uid/gid options belongs to root: the start is refused with the directory and the fix
    # instead of a PermissionError traceback on the first secret written.
    container = containers.run(
        image, "root-tmpfs", [], env={"AUDITFLOW_PORT": str(free_port())}, tmpfs="/var/lib/auditflow"
    )
    exit_code = int(docker("wait", container.name, timeout=60).stdout.strip())
    logs = container.logs()
    assert exit_code == 1, logs
    assert "data directory /var/lib/auditflow: not writable by uid 10001 (owner uid 0" in logs
    assert "--tmpfs /var/lib/auditflow:uid=10001,gid=10001,mode=0700" in logs
    assert "Traceback" not in logs
