"""Running one process: the HTTP server and the runtime under our own signal handling.

uvicorn (≥ 0.29) re-raises SIGTERM/SIGINT after its own shutdown, which makes the process exit with
143/130 and Kubernetes report the pod as `Error`. We install handlers that only request a graceful
exit, then stop intake, drain, flush and return 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING

import uvicorn
from fastapi import FastAPI

from auditflow.app import create_app
from auditflow.gctune import tuned_collector
from auditflow.roles import Role
from auditflow.runtime import Runtime

if TYPE_CHECKING:
    from auditflow.security import ApiToken
    from auditflow.services.dashboard.users import UserDirectory

log = logging.getLogger("auditflow.server")


class _GracefulServer(uvicorn.Server):
    exit_hooks: list[Callable[[], None]]

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Long-lived responses (the dashboard's live stream) must end now: uvicorn waits for open
        # connections before it shuts down, which would hold SIGTERM for the whole grace period.
        for hook in getattr(self, "exit_hooks", []):
            hook()
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM)
        for sig in signals:
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)


@dataclass
class ProcessSpec:
    """One process to serve: its runtime (whose roles decide the routers and the dashboard), where
    it listens, and what runs at start-up and shutdown besides the runtime's own lifecycle."""

    runtime: Runtime
    tokens: list[ApiToken]
    host: str
    port: int
    # Users of the dashboard, loaded by the caller so that it can show a generated password.
    dashboard_users: UserDirectory | None = None
    on_ready: Callable[[], None] | None = None
    exit_hooks: list[Callable[[], None]] = field(default_factory=list)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


def server_config(app: FastAPI, spec: ProcessSpec) -> uvicorn.Config:
    """uvicorn's settings: forwarded headers believed from the configured proxies only, and TLS when a
    certificate is configured (tokens and session cookies must not cross a network in clear)."""
    settings = spec.runtime.settings
    return uvicorn.Config(
        app,
        host=spec.host,
        port=spec.port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=max(1, int(settings.shutdown_grace / 3)),
        server_header=False,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        ssl_certfile=settings.tls_cert_file,
        ssl_keyfile=settings.tls_key_file,
    )


async def serve(spec: ProcessSpec) -> int:
    """Serve until a signal; return the process exit code."""
    app = create_app(spec.runtime, spec.tokens, manage_lifecycle=False)
    if Role.DASHBOARD in spec.runtime.roles:
        from auditflow.services.dashboard import mount_dashboard

        dashboard = mount_dashboard(app, spec.runtime, tokens=spec.tokens, users=spec.dashboard_users)
        spec.exit_hooks.append(dashboard.close_streams)
        spec.closers.append(dashboard.aclose)
    server = _GracefulServer(server_config(app, spec))
    server.exit_hooks = spec.exit_hooks
    await spec.runtime.start()
    with tuned_collector():
        try:
            serving = asyncio.create_task(server.serve())
            # uvicorn exposes `started` as a flag only, so poll it briefly during start-up
            while not server.started and not serving.done():  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            if server.started and spec.on_ready is not None:
                spec.on_ready()
            await serving
            if not server.started:
                log.error("could not serve on %s:%s", spec.host, spec.port)
                return 1
        finally:
            log.info("stopping: draining work and closing connections")
            try:
                async with asyncio.timeout(spec.runtime.settings.shutdown_grace):
                    for closer in spec.closers:
                        await closer()
                    await spec.runtime.aclose()
            except TimeoutError:
                log.error("shutdown did not finish within %.0f s", spec.runtime.settings.shutdown_grace)
    log.info("stopped")
    return 0


def run_process(spec: ProcessSpec) -> int:
    try:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(serve(spec))
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        return asyncio.run(serve(spec))
