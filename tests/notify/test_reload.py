"""The routing file is hot-reloaded: a valid change reaches the outbox writer and the dispatcher, a
broken one is refused with the file named and the previous routing stays active."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from auditflow.backends.store.sql import SqlAlertStore
from auditflow.notify.dispatcher import Dispatcher
from auditflow.notify.outbox import OutboxWriter
from auditflow.notify.reload import RoutingFile
from auditflow.notify.routing import Routing
from tests.notify.conftest import routing_dict


def rewrite(path: Path, text: str) -> None:
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    os.utime(path, ns=(before + 10**9, before + 10**9))  # a coarse clock must not hide the change


def test_a_valid_change_is_applied_and_a_broken_one_refused(tmp_path: Path, secret_env: str) -> None:
    path = tmp_path / "routing.yaml"
    document = routing_dict("https://hooks.example/x")
    rewrite(path, yaml.safe_dump(document))
    watch = RoutingFile(path, interval_s=0)
    assert watch.poll() is None  # unchanged
    document["routes"][0]["min_severity"] = "ERROR"
    rewrite(path, yaml.safe_dump(document))
    changed = watch.poll()
    assert changed is not None
    assert changed.routes[0].min_severity == "ERROR"
    rewrite(path, "routes: [\n")
    assert watch.poll() is None
    assert watch.last_error is not None
    assert watch.last_error.startswith(f"{path}:")
    assert watch.routing.routes[0].min_severity == "ERROR"  # the previous routing stays
    rewrite(path, yaml.safe_dump(document))
    assert watch.poll() is None  # valid again, but the same routing as the active one
    assert watch.last_error is None


async def test_the_dispatcher_hands_a_reload_to_the_writer(tmp_path: Path, secret_env: str) -> None:
    path = tmp_path / "routing.yaml"
    document = routing_dict("https://hooks.example/x")
    rewrite(path, yaml.safe_dump(document))
    watch = RoutingFile(path, interval_s=0)
    writer = OutboxWriter(watch.routing)
    seen: list[Routing] = []

    def on_reload(routing: Routing) -> None:
        writer.routing = routing
        seen.append(routing)

    store = SqlAlertStore(f"sqlite:///{tmp_path / 'x.sqlite3'}")
    dispatcher = Dispatcher(store, watch.routing, watch=watch, on_reload=on_reload)
    try:
        document["channels"]["pager"] = {**document["channels"]["soc"], "url": "https://pager.example/y"}
        document["routes"][1]["channels"] = ["pager"]
        rewrite(path, yaml.safe_dump(document))
        dispatcher.reload()
        assert [sorted(routing.channels) for routing in seen] == [["pager", "soc"]]
        assert writer.routing.routes[1].channels == ["pager"]
        assert dispatcher.routing is writer.routing
        dispatcher.reload()  # nothing changed since
        assert len(seen) == 1
        assert dispatcher.status().status == "up"
        rewrite(path, "channels: {}\n")
        dispatcher.reload()
        status = dispatcher.status()
        assert (status.name, status.status, status.critical) == ("notifications", "down", False)
        assert status.last_error is not None
        assert status.last_error.startswith(f"{path}: routes: Field required")
        assert len(seen) == 1
    finally:
        await dispatcher.aclose()
