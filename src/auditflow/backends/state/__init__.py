"""Window state for threshold and sequence rules: `memory://` in-process, `redis://` shared,
`redis+cluster://` shared on a Redis Cluster."""

from __future__ import annotations

from auditflow.backends.state.base import Hit, WindowOp, WindowState
from auditflow.tls import TlsOptions

__all__ = ["Hit", "WindowOp", "WindowState", "create_state"]


def create_state(url: str, *, key_prefix: str = "auditflow:", tls: TlsOptions | None = None) -> WindowState:
    """The window state for a URL scheme; real backends import lazily so their extras stay optional."""
    scheme = url.split(":", 1)[0]
    if scheme == "memory":
        from auditflow.backends.state.memory import MemoryWindowState

        return MemoryWindowState(url, key_prefix=key_prefix)
    if scheme in {"redis+cluster", "rediss+cluster"}:
        from auditflow.backends.state.cluster import RedisClusterWindowState

        return RedisClusterWindowState(url, key_prefix=key_prefix, tls=tls)
    if scheme in {"redis", "rediss"}:
        from auditflow.backends.state.redis import RedisWindowState

        return RedisWindowState(url, key_prefix=key_prefix, tls=tls)
    raise ValueError(f"unsupported state URL scheme {scheme!r}")
