"""The `redis+cluster://` state URL, parsed without importing redis-py (the settings validate it)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["CLUSTER_SCHEMES", "ClusterUrl", "parse_cluster_url"]

CLUSTER_SCHEMES = frozenset({"redis+cluster", "rediss+cluster"})


@dataclass(frozen=True, slots=True)
class ClusterUrl:
    """A parsed `redis+cluster://` URL: the seed nodes, credentials, TLS and the WAIT options."""

    nodes: tuple[tuple[str, int], ...]
    tls: bool
    username: str | None
    password: str | None
    wait_replicas: int
    wait_timeout_ms: int


def parse_cluster_url(url: str) -> ClusterUrl:
    """Parse `redis+cluster://[user:password@]host:port[,host:port...][?wait_replicas=N&wait_timeout_ms=M]`
    (`rediss+cluster://` for TLS); ValueError names what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in CLUSTER_SCHEMES:
        raise ValueError(
            f"a Redis Cluster URL starts with redis+cluster:// or rediss+cluster://, not {url.split(':')[0]!r}"
        )
    if parts.path not in {"", "/"}:
        raise ValueError("a Redis Cluster URL has no database number (a Cluster has only database 0)")
    credentials, _, hosts = parts.netloc.rpartition("@")
    username = password = None
    if credentials:
        user, _, secret = credentials.partition(":")
        username, password = (unquote(user) or None), (unquote(secret) or None)
    nodes: list[tuple[str, int]] = []
    for node in hosts.split(","):
        host, _, port = node.strip().rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"a Redis Cluster URL lists host:port seed nodes separated by commas, got {node!r}")
        nodes.append((host, int(port)))
    query = {name: values[-1] for name, values in parse_qs(parts.query, keep_blank_values=True).items()}
    unknown = set(query) - {"wait_replicas", "wait_timeout_ms"}
    if unknown:
        raise ValueError(f"unknown Redis Cluster URL option(s) {', '.join(sorted(unknown))}")
    options = {}
    for name, default in (("wait_replicas", 0), ("wait_timeout_ms", 100)):
        value = query.get(name, str(default))
        if not value.isdigit():
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        options[name] = int(value)
    return ClusterUrl(
        nodes=tuple(nodes),
        tls=parts.scheme == "rediss+cluster",
        username=username,
        password=password,
        wait_replicas=options["wait_replicas"],
        wait_timeout_ms=options["wait_timeout_ms"],
    )
