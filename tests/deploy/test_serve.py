"""The exact commands of the rendered Deployments, started as processes: each listens on the port its
manifest gives, answers the probe paths its manifest names, and exits 0 on SIGTERM within the grace, which
is what keeps pods from ending in `Error` on termination. Backends are swapped for memory:// and SQLite."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from auditflow.bench.processes import free_port
from tests.deploy.conftest import (
    SERVICES,
    STARTUP_TIMEOUT,
    app_container,
    container_env,
    of_kind,
    settings_configmap,
    wait_for_line,
    with_port,
)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SERVICES))
def test_manifest_command_serves_its_probes_and_stops_cleanly(
    name: str, rendered: dict[str, list[dict[str, Any]]], secrets_env: dict[str, str], tmp_path: Path
) -> None:
    docs = rendered["prod"]
    deployment = next(d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == name)
    container = app_container(deployment)
    configmap = settings_configmap(docs)
    env = container_env(container, configmap, secrets_env)

    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    rules = next(c for c in of_kind(docs, "ConfigMap") if c["metadata"]["name"] == "auditflow-rules")
    for filename, text in rules["data"].items():
        (rules_dir / filename).write_text(text, encoding="utf-8")
    if "AUDITFLOW_NOTIFY_CONFIG" in env:  # the routing ConfigMap, where the manifest mounts it
        routing = next(c for c in of_kind(docs, "ConfigMap") if c["metadata"]["name"] == "auditflow-notify")
        routing_file = tmp_path / "notify" / Path(env["AUDITFLOW_NOTIFY_CONFIG"]).name
        routing_file.parent.mkdir()
        routing_file.write_text(routing["data"][routing_file.name], encoding="utf-8")
        env["AUDITFLOW_NOTIFY_CONFIG"] = str(routing_file)
    env |= {
        "AUDITFLOW_BROKER_URL": "memory://",
        "AUDITFLOW_STATE_URL": "memory://",
        "AUDITFLOW_DATABASE_URL": f"sqlite:///{tmp_path / 'alerts.sqlite3'}",
        "AUDITFLOW_DATA_DIR": str(tmp_path / "data"),
        "AUDITFLOW_RULES_PATH": str(rules_dir),
    }
    port = free_port()
    args = with_port(container["args"], port)
    assert args[args.index("--host") + 1] == "0.0.0.0"
    # Bind to loopback only in the test; the manifest's 0.0.0.0 is checked above.
    args[args.index("--host") + 1] = "127.0.0.1"

    process = subprocess.Popen(
        [sys.executable, "-m", "auditflow", *args],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("AUDITFLOW_")}, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_line(process, "listening on", STARTUP_TIMEOUT)
        base = f"http://127.0.0.1:{port}"
        probes = {p: container[p]["httpGet"]["path"] for p in ("startupProbe", "livenessProbe", "readinessProbe")}
        with httpx.Client(base_url=base, timeout=10) as client:
            for probe, path in probes.items():
                response = client.get(path)
                if probe == "readinessProbe":
                    assert response.status_code in (200, 503), (path, response.text)
                    assert response.json()["service"] == name
                else:
                    assert response.status_code == 200, (path, response.text)
            metrics = client.get(SERVICES[name].metrics)
            assert metrics.status_code == 200
            assert metrics.headers["content-type"].startswith("text/plain")
        process.send_signal(signal.SIGTERM)
        grace = float(configmap["AUDITFLOW_SHUTDOWN_GRACE"])
        assert process.wait(timeout=grace + 5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
