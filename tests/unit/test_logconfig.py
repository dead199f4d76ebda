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
    assert "ValueError (message withheld" in str(record["exception"])
    assert "ValueError: line one" not in str(record["exception"])
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


SECRET = "alice-password-from-an-event"


def _logged_exception(stream: io.StringIO) -> str:
    records = _records(stream)
    assert len(records) == 1
    return str(records[0]["exception"])


def _handle(event: dict[str, str]) -> None:
    try:
        event["missing-" + event["user"]]
    except KeyError as exc:
        raise ValueError(f"cannot handle event of {event['user']}") from exc


def test_tracebacks_keep_frames_and_types_but_not_event_values() -> None:
    stream = io.StringIO()
    configure_logging("analysis", "INFO", stream)
    try:
        _handle({"user": SECRET})
    except ValueError:
        logging.getLogger("auditflow.test").exception("batch failed")
    text = _logged_exception(stream)
    assert SECRET not in text
    assert "KeyError" in text
    assert "ValueError" in text
    assert "direct cause" in text
    assert "_handle" in text, "the frames stay for debugging"


def test_validation_errors_keep_locations_but_not_inputs() -> None:
    from pydantic import BaseModel, ValidationError

    class Shape(BaseModel):
        port: int

    stream = io.StringIO()
    configure_logging("analysis", "INFO", stream)
    try:
        Shape.model_validate({"port": SECRET})
    except ValidationError:
        logging.getLogger("auditflow.test").exception("invalid")
    text = _logged_exception(stream)
    assert SECRET not in text
    assert "port:" in text


def test_messages_of_our_own_errors_stay() -> None:
    from auditflow.errors import ConfigError

    stream = io.StringIO()
    configure_logging("analysis", "INFO", stream)
    try:
        raise ConfigError("rules.yaml: rule r1: field window is missing")
    except ConfigError:
        logging.getLogger("auditflow.test").exception("reload failed")
    assert "rule r1: field window is missing" in _logged_exception(stream)
