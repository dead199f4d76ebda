"""The dashboard as a real process: sessions survive a restart and end at sign-out, and 50
concurrent sign-ins stay inside the pod's memory limit (argon2 takes 64 MiB per check)."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher

from tests.e2e.processes import AuditflowProcess, auditflow_env, free_port

TOKEN = "e2e-token-0123456789abcdef"
PASSWORD = "correct horse battery"
MIB = 1024 * 1024
POD_LIMIT = 256 * MIB
# The hashing parameters of production entries (argon2-cffi's defaults: 64 MiB, t=3, p=4).
ENTRY = f"ana:analyst:{PasswordHasher().hash(PASSWORD)}"


@pytest.fixture
def processes() -> Iterator[list[AuditflowProcess]]:
    started: list[AuditflowProcess] = []
    yield started
    for process in started:
        process.kill()


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match is not None
    return match.group(1)


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak resident) of a process, in bytes."""
    text = Path(f"/proc/{pid}/status").read_text()
    return {key: int(kb) * 1024 for key, kb in re.findall(r"^(VmHWM|VmRSS):\s+(\d+) kB", text, re.MULTILINE)}


def sign_in(client: httpx.Client, password: str = PASSWORD) -> httpx.Response:
    token = csrf_of(client.get("/login").text)
    return client.post("/login", data={"username": "ana", "password": password, "csrf_token": token})


def test_a_session_survives_a_restart_and_ends_at_sign_out(tmp_path: Path, processes: list[AuditflowProcess]) -> None:
    port = free_port()
    env = auditflow_env(tmp_path, {"AUDITFLOW_API_TOKENS": TOKEN, "AUDITFLOW_DASHBOARD_USERS": ENTRY})
    process = AuditflowProcess(["run", "--generator-rate", "0", "--port", str(port)], env, port)
    processes.append(process)
    process.start()
    with httpx.Client(base_url=process.url, timeout=30) as client:
        assert sign_in(client).status_code == 303
        cookie = client.cookies["auditflow_session"]
    assert process.terminate()[0] == 0
    process.start()
    with httpx.Client(base_url=process.url, timeout=30, cookies={"auditflow_session": cookie}) as client:
        page = client.get("/rules")
        assert page.status_code == 200
        assert client.post("/logout", data={"csrf_token": csrf_of(page.text)}).status_code == 303
    with httpx.Client(base_url=process.url, timeout=30, cookies={"auditflow_session": cookie}) as replay:
        assert replay.get("/rules").status_code == 303
    assert process.terminate()[0] == 0


async def concurrent_sign_ins(url: str, count: int) -> list[int]:
    """Half wrong, half right, each from its own address (trusted X-Forwarded-For from loopback), so
    that only the password-check bound, not the throttle, decides how many are checked at once."""

    async def one(index: int) -> int:
        headers = {"X-Forwarded-For": f"10.1.{index // 200}.{index % 200 + 1}"}
        async with httpx.AsyncClient(base_url=url, timeout=120, headers=headers) as client:
            token = csrf_of((await client.get("/login")).text)
            password = PASSWORD if index % 2 else "wrong"
            form = {"username": "ana", "password": password, "csrf_token": token}
            return (await client.post("/login", data=form)).status_code

    return list(await asyncio.gather(*(one(i) for i in range(count))))


@pytest.mark.slow
def test_fifty_concurrent_sign_ins_stay_inside_the_memory_limit(
    tmp_path: Path, processes: list[AuditflowProcess]
) -> None:
    port = free_port()
    env = auditflow_env(
        tmp_path,
        {
            "AUDITFLOW_API_TOKENS": TOKEN,
            "AUDITFLOW_DASHBOARD_USERS": ENTRY,
            # Nothing listens there: the sign-in page and throttle do not need the alerts API.
            "AUDITFLOW_ALERTS_API_URL": f"http://127.0.0.1:{free_port()}",
        },
    )
    process = AuditflowProcess(["serve", "dashboard", "--port", str(port)], env, port)
    processes.append(process)
    process.start()
    with httpx.Client(base_url=process.url, timeout=60) as client:
        assert sign_in(client).status_code == 303  # warm: session store opened, one check done
    time.sleep(0.2)
    before = memory(process.pid)
    codes = Counter(asyncio.run(concurrent_sign_ins(process.url, 50)))
    after = memory(process.pid)
    assert set(codes) <= {303, 401, 503}
    assert codes[303] >= 1
    assert codes[401] >= 1
    # Two checks at a time by default: the peak grows by about 2 x 64 MiB, not 50 x 64 MiB.
    assert after["VmHWM"] - before["VmRSS"] < 3 * 64 * MIB, (before, after, codes)
    assert after["VmHWM"] < POD_LIMIT, (before, after, codes)
