from __future__ import annotations

import io
import logging

import orjson

from auditflow.logconfig import configure_logging, current_log_level, set_log_level


def _records(stream: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_each_record_is_one_json_line_even_with_a_traceback() -> None:
    stream = io.StringIO()
    configure_logging("analysis", "INFO", stream)
    log = logging.getLogger("auditflow.test")
    try:
        raise ValueError("line one\nline two")
    except ValueError:
        log.exception("failed\nbadly", extra={"alert_id": "a-1"})
    records = _records(stream)
    assert len(records) == 1
    record = records[0]
    assert record["level"] == "ERROR"
    assert record["service"] == "analysis"
    assert record["logger"] == "auditflow.test"
    assert record["message"] == "failed\nbadly"
    assert record["alert_id"] == "a-1"
    assert "ValueError: line one" in str(record["exception"])
    assert str(record["ts"]).endswith("Z")


def test_level_changes_at_runtime() -> None:
    stream = io.StringIO()
    configure_logging("x", "INFO", stream)
    log = logging.getLogger("auditflow.test")
    log.debug("hidden")
    set_log_level("DEBUG")
    log.debug("shown")
    assert current_log_level() == "DEBUG"
    assert [r["message"] for r in _records(stream)] == ["shown"]
    set_log_level("INFO")
