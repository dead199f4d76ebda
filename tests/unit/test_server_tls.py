"""The HTTP server serves TLS when a certificate is configured (a port reached without a TLS proxy in
front must not carry tokens in clear), and believes forwarded headers from the configured proxies only."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from auditflow.config import load_settings
from auditflow.errors import ConfigError
from auditflow.runtime import Runtime
from auditflow.server import ProcessSpec, server_config


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("server-tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_a_configured_certificate_makes_the_port_https(certificate: tuple[Path, Path], tmp_path: Path) -> None:
    cert, key = certificate
    settings = load_settings(data_dir=tmp_path, tls_cert_file=cert, tls_key_file=key, forwarded_allow_ips="10.0.0.0/8")
    port = _free_port()
    spec = ProcessSpec(Runtime(settings, "generator"), tokens=[], host="127.0.0.1", port=port)
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"pong": "yes"}

    config = server_config(app, spec)
    assert config.forwarded_allow_ips == "10.0.0.0/8"
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                await asyncio.sleep(0.02)
        trusted = ssl.create_default_context(cafile=str(cert))
        async with httpx.AsyncClient(verify=trusted) as client:
            response = await client.get(f"https://127.0.0.1:{port}/ping")
            assert response.json() == {"pong": "yes"}
        async with httpx.AsyncClient() as client:
            with pytest.raises(httpx.HTTPError):
                await client.get(f"http://127.0.0.1:{port}/ping")
    finally:
        server.should_exit = True
        await serving


def test_a_certificate_needs_its_key(certificate: tuple[Path, Path]) -> None:
    with pytest.raises(ConfigError, match="tls_cert_file and tls_key_file go together"):
        load_settings(tls_cert_file=certificate[0])
