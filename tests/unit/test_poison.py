"""Poison isolation in isolation: which parts of a failing batch are handled, which are reported as
poison, and when the failure is given back to the broker instead."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import pytest

from auditflow.backends.broker import Delivery
from auditflow.errors import BackendUnavailable
from auditflow.services.poison import MAX_FAILURES_WITHOUT_SUCCESS, describe, isolate, split_items


def message(*items: str) -> Delivery:
    return Delivery(orjson.dumps(list(items)), {"x-source": "test"})


class Handler:
    """Fails every attempt that contains a poison item; records the items of successful attempts."""

    def __init__(self, poison: set[str] | None = None, *, always: Exception | None = None) -> None:
        self.poison = poison or set()
        self.always = always
        self.handled: list[str] = []
        self.attempts = 0

    async def __call__(self, batch: Sequence[Delivery]) -> None:
        self.attempts += 1
        items = [item for d in batch for item in orjson.loads(d.body)]
        if self.always is not None:
            raise self.always
        bad = self.poison.intersection(items)
        if bad:
            raise ValueError(f"cannot take {sorted(bad)[0]}")
        self.handled.extend(items)


async def test_a_good_batch_is_handled_once() -> None:
    handler = Handler()
    assert await isolate(handler, [message("a", "b"), message("c")]) == []
    assert handler.handled == ["a", "b", "c"]
    assert handler.attempts == 1


async def test_one_poison_item_among_many_messages_is_the_only_part_left_out() -> None:
    batch = [message(*(f"m{m}e{e}" for e in range(50))) for m in range(20)]
    handler = Handler({"m13e27"})
    [poison] = await isolate(handler, batch)
    assert not poison.whole
    assert orjson.loads(poison.delivery.body) == ["m13e27"]
    assert poison.delivery.headers == {"x-source": "test"}
    assert poison.reason == "poison: ValueError: cannot take m13e27"
    assert sorted(handler.handled) == sorted(f"m{m}e{e}" for m in range(20) for e in range(50) if (m, e) != (13, 27))
    assert handler.attempts < 30  # bisection, not one attempt per item


async def test_a_poison_message_of_one_item_is_reported_whole() -> None:
    batch = [message("a"), message("bad"), message("c")]
    [poison] = await isolate(Handler({"bad"}), batch)
    assert poison.whole
    assert poison.delivery is batch[1]


async def test_several_poison_items_are_each_found() -> None:
    handler = Handler({"b", "y"})
    found = await isolate(handler, [message("a", "b", "c"), message("x", "y", "z")])
    assert sorted(orjson.loads(p.delivery.body)[0] for p in found) == ["b", "y"]
    assert sorted(handler.handled) == ["a", "c", "x", "z"]


async def test_when_no_part_succeeds_the_first_error_goes_back_to_the_broker() -> None:
    handler = Handler(always=RuntimeError("schema missing"))
    batch = [message(*(str(i) for i in range(500))) for _ in range(100)]
    with pytest.raises(RuntimeError, match="schema missing"):
        await isolate(handler, batch)
    assert handler.attempts == MAX_FAILURES_WITHOUT_SUCCESS  # bounded, not 50,000 attempts


async def test_a_single_failing_item_alone_is_not_called_poison() -> None:
    with pytest.raises(ValueError, match="cannot take bad"):
        await isolate(Handler({"bad"}), [message("bad")])


async def test_a_dependency_outage_during_the_search_propagates() -> None:
    calls = 0

    async def handler(batch: Sequence[Delivery]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("poison somewhere")
        raise BackendUnavailable("store down")

    with pytest.raises(BackendUnavailable):
        await isolate(handler, [message("a"), message("b")])


def test_split_items_keeps_a_message_that_cannot_be_split() -> None:
    single, broken = message("only"), Delivery(b"{not json", {})
    assert split_items(single) == [single]
    assert split_items(broken) == [broken]
    assert [orjson.loads(d.body) for d in split_items(message("a", "b"))] == [["a"], ["b"]]


def test_describe_bounds_the_reason() -> None:
    assert describe(ValueError("x" * 5000 + "\nsecond line")).startswith("poison: ValueError: xxx")
    assert len(describe(ValueError("x" * 5000))) == 1000
    assert describe(KeyError()) == "poison: KeyError"
