"""Each backend maps its driver's errors in one context manager: down or cut is BackendUnavailable
(hold and retry), an answer the server gave is BackendError or, on RabbitMQ, a refused channel."""

from __future__ import annotations

import aiormq
import pytest
from pamqp import commands
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from auditflow.backends.broker import rabbitmq_errors
from auditflow.backends.state import redis as redis_state
from auditflow.errors import BackendError, BackendUnavailable


@pytest.mark.parametrize("error", [RedisConnectionError("refused"), RedisTimeoutError("slow"), OSError("reset")])
def test_redis_connection_trouble_is_unavailable(error: Exception) -> None:
    with pytest.raises(BackendUnavailable, match="redis is unreachable") as caught, redis_state.mapped_errors("ping"):
        raise error
    assert caught.value.__cause__ is error


def test_redis_server_answer_is_an_error_naming_the_operation() -> None:
    with (
        pytest.raises(BackendError, match="redis window script failed: NOSCRIPT"),
        redis_state.mapped_errors("window script"),
    ):
        raise ResponseError("NOSCRIPT no such script")


@pytest.mark.parametrize(
    "error", [ConnectionResetError("reset"), TimeoutError(), aiormq.exceptions.ConnectionClosed(320, "shutdown")]
)
def test_rabbitmq_connection_trouble_is_unavailable(error: Exception) -> None:
    with (
        pytest.raises(BackendUnavailable, match=r"RabbitMQ at h:5672: publish to 'q' failed") as caught,
        rabbitmq_errors.mapped_errors("h:5672", "publish to 'q'"),
    ):
        raise error
    assert not isinstance(caught.value, rabbitmq_errors.ChannelRefused)


def test_rabbitmq_refused_channel_is_its_own_kind() -> None:
    refusal = aiormq.exceptions.ChannelPreconditionFailed(commands.Channel.Close(406, "inequivalent arg"))
    with (
        pytest.raises(rabbitmq_errors.ChannelRefused, match="declare q refused"),
        rabbitmq_errors.mapped_errors("h:5672", "declare q"),
    ):
        raise refusal


def test_project_errors_pass_through_unchanged() -> None:
    original = BackendError("already mapped")
    with (
        pytest.raises(BackendError) as caught,
        rabbitmq_errors.mapped_errors("h:5672", "x"),
        redis_state.mapped_errors("x"),
    ):
        raise original
    assert caught.value is original
