"""Where the RabbitMQ broker turns aiormq / aio-pika errors into the project's exception tree,
so that no other module (and no service) catches a driver error."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import aiormq
from aio_pika.exceptions import CONNECTION_EXCEPTIONS

from auditflow.errors import BackendUnavailable

# Everything the driver raises when the server is down, the connection drops or a publish is refused.
DRIVER_ERRORS: tuple[type[BaseException], ...] = (*CONNECTION_EXCEPTIONS, TimeoutError)


class ChannelRefused(BackendUnavailable):
    """The server closed the channel on a request it refused (a declaration with other arguments,
    a passive declaration of a missing queue). The connection is fine; callers that expect a
    refusal catch this, for the others it is one more way of the broker being unusable now."""


@contextlib.contextmanager
def mapped_errors(where: str, operation: str) -> Iterator[None]:
    """Map driver errors raised inside the block; `where` is host:port, never the credentials."""
    try:
        yield
    except aiormq.exceptions.AMQPChannelError as exc:
        raise ChannelRefused(f"RabbitMQ at {where}: {operation} refused: {exc}") from exc
    except DRIVER_ERRORS as exc:
        raise BackendUnavailable(f"RabbitMQ at {where}: {operation} failed: {exc!r}") from exc


@contextlib.contextmanager
def ignored_errors() -> Iterator[None]:
    """For closing what may already be gone: a failure there changes nothing for the caller."""
    with contextlib.suppress(*DRIVER_ERRORS):
        yield
