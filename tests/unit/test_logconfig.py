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


class _Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_auto_writes_console_lines_to_a_terminal_and_json_elsewhere() -> None:
    from auditflow.logconfig import resolve_format

    assert resolve_format("auto", _Terminal()) == "console"
    assert resolve_format("auto", io.StringIO()) == "json"
    closed = io.StringIO()
    closed.close()
    assert resolve_format("auto", closed) == "json"


def test_auto_on_a_real_pseudo_terminal_is_console() -> None:
    import os

    from auditflow.logconfig import resolve_format

    main_fd, terminal_fd = os.openpty()
    try:
        with open(terminal_fd, "w", closefd=False) as terminal, open(main_fd, "w", closefd=False) as pipe_end:
            assert resolve_format("auto", terminal) == "console"
            assert resolve_format("auto", pipe_end) == "console"  # the controlling side is a tty as well
        read_fd, write_fd = os.pipe()
        with open(write_fd, "w") as pipe:
            assert resolve_format("auto", pipe) == "json"
        os.close(read_fd)
    finally:
        os.close(main_fd)
        os.close(terminal_fd)


def test_console_lines_are_readable_and_carry_the_context() -> None:
    from auditflow.correlation import correlated

    stream = _Terminal()
    configure_logging("analysis", "INFO", stream)
    log = logging.getLogger("auditflow.test")
    with correlated("0123abcd"):
        log.warning("rule %s skipped", "r1", extra={"rule_id": "r1"})
    try:
        _handle({"user": SECRET})
    except ValueError:
        log.exception("batch failed")
    first, *rest = stream.getvalue().splitlines()
    assert " WARNING analysis  auditflow.test: rule r1 skipped  correlation_id=0123abcd rule_id=r1" in first
    assert first[:4].isdigit()
    assert not first.startswith("{")
    assert "ERROR   analysis  auditflow.test: batch failed" in rest[0]
    assert "correlation_id" not in rest[0]  # outside a batch: no id
    assert any("KeyError" in line for line in rest[1:]), "the traceback follows on its own lines"
    assert SECRET not in stream.getvalue()


def test_the_format_setting_overrides_the_terminal_check() -> None:
    from auditflow.correlation import correlated

    terminal = _Terminal()
    configure_logging("analysis", "INFO", terminal, log_format="json")
    with correlated("c0ffee"):
        logging.getLogger("auditflow.test").info("as json")
    [record] = _records(terminal)
    assert record["correlation_id"] == "c0ffee"

    plain = io.StringIO()
    configure_logging("analysis", "INFO", plain, log_format="console")
    logging.getLogger("auditflow.test").info("as text")
    assert plain.getvalue().rstrip().endswith("auditflow.test: as text")


def test_an_unknown_format_is_refused_naming_the_setting() -> None:
    import pytest

    from auditflow.config import load_settings
    from auditflow.errors import ConfigError

    with pytest.raises(ConfigError, match="log_format"):
        load_settings(log_format="xml")
