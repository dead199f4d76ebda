"""Broker URLs: one URL, or several RabbitMQ nodes of one cluster as a comma-separated list
(`amqp://u:p@h1:5672/,amqp://u:p@h2:5672/`). Parsed here, without the driver, so that the settings
can check them at start."""

from __future__ import annotations

from urllib.parse import urlsplit

NODE_SCHEMES = frozenset({"amqp", "amqps"})


def shown(part: str) -> str:
    """A URL as it may appear in a message: the credentials replaced by `***`."""
    scheme, sep, rest = part.partition("://")
    if not sep:
        return part
    userinfo, at, hostinfo = rest.rpartition("@")
    return f"{scheme}://***@{hostinfo}" if at and userinfo else part


def split_broker_urls(value: str) -> list[str]:
    """The URLs of a `broker_url` setting, in order. Raises ValueError naming the first bad part
    (by position and without its credentials): an empty part, a part that is no `amqp://` or
    `amqps://` URL with a host, a bad port, or a list that mixes schemes. A single URL is returned
    as it is (its scheme is checked by the caller)."""
    parts = [part.strip() for part in value.split(",")]
    if len(parts) == 1:
        return parts
    schemes: set[str] = set()
    for index, part in enumerate(parts, start=1):
        where = f"part {index} of {len(parts)}"
        if not part:
            raise ValueError(f"{where} is empty: separate the node URLs with single commas")
        split = urlsplit(part)
        if split.scheme not in NODE_SCHEMES:
            raise ValueError(
                f"{where} ({shown(part)!r}): a list of broker URLs names RabbitMQ nodes, each `amqp://` or `amqps://`"
            )
        if not split.hostname:
            raise ValueError(f"{where} ({shown(part)!r}) has no host")
        try:
            split.port  # noqa: B018 - raises on a port that is not a number in range
        except ValueError:
            raise ValueError(f"{where} ({shown(part)!r}) has an invalid port") from None
        schemes.add(split.scheme)
    if len(schemes) > 1:
        raise ValueError("the node URLs mix amqp:// and amqps://: use one scheme for every node")
    return parts
