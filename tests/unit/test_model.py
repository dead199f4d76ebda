from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from auditflow.model import Event, Severity
from auditflow.model.alert import AlertStatus, AlertUpdate
from auditflow.model.event import MAX_DETAILS_BYTES
from auditflow.model.schema import contract_schemas, render
from auditflow.model.timeutil import format_utc

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def test_minimal_event_gets_id_timestamp_and_default_severity() -> None:
    event = Event(event_type="user_login")
    assert event.severity is Severity.INFO
    assert event.timestamp.tzinfo is not None
    assert event.event_id.version == 4


def test_offset_timestamps_are_emitted_in_utc_with_a_single_z() -> None:
    event = Event.model_validate({"event_type": "x", "timestamp": "2026-01-02T05:04:05.5+02:00"})
    dumped = orjson.loads(event.model_dump_json())
    assert dumped["timestamp"] == "2026-01-02T03:04:05.500Z"


def test_naive_timestamps_are_taken_as_utc() -> None:
    event = Event.model_validate({"event_type": "x", "timestamp": "2026-01-02T03:04:05"})
    assert event.timestamp == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@given(st.datetimes(timezones=st.just(timezone(timedelta(hours=-7)))))
def test_formatted_timestamps_never_carry_both_offset_and_z(value: datetime) -> None:
    text = format_utc(value)
    assert text.endswith("Z")
    assert "+" not in text
    assert text.count("Z") == 1


@pytest.mark.parametrize("event_type", ["", "User_Login", "a" * 65, "with space"])
def test_event_type_pattern_is_enforced(event_type: str) -> None:
    with pytest.raises(ValidationError) as info:
        Event(event_type=event_type)
    assert info.value.errors()[0]["loc"] == ("event_type",)


def test_unknown_top_level_fields_are_rejected() -> None:
    with pytest.raises(ValidationError) as info:
        Event.model_validate({"event_type": "x", "colour": "red"})
    assert info.value.errors()[0]["loc"] == ("colour",)


def test_details_over_64_kib_are_rejected() -> None:
    with pytest.raises(ValidationError, match="details is"):
        Event(event_type="x", details={"blob": "a" * MAX_DETAILS_BYTES})


def test_field_value_follows_dotted_paths_into_details() -> None:
    event = Event(event_type="x", user_id="bob", details={"resource": {"path": "/etc/shadow"}})
    assert event.field_value("user_id") == "bob"
    assert event.field_value("details.resource.path") == "/etc/shadow"
    assert event.field_value("details.missing.path") is None
    assert event.field_value("nonexistent") is None


@pytest.mark.parametrize("name", sorted(contract_schemas()))
def test_committed_json_schemas_are_current(name: str) -> None:
    committed = (SCHEMAS / name).read_bytes()
    assert committed == render(contract_schemas()[name]), (
        f"schemas/{name} is stale: run `python -m auditflow.model.schema`"
    )


def test_schema_export_writes_every_contract(tmp_path: Path) -> None:
    from auditflow.model.schema import main

    assert main([str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(contract_schemas())


@given(
    st.datetimes(
        # From day 2: 0001-01-01 at +05:30 is before the first representable UTC instant (the
        # validator answers that with a ValueError, test_edge_limits).
        min_value=datetime(1, 1, 2),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]),
    )
)
def test_millis_round_trip_exactly(value: datetime) -> None:
    from auditflow.model.timeutil import from_millis, to_millis, to_utc

    normalised = to_utc(value)
    assert from_millis(to_millis(normalised)) == normalised
    assert format_utc(normalised) == format_utc(value)
    assert format_utc(value)[:4].isdigit()


def test_millis_where_float_arithmetic_would_lose_a_millisecond() -> None:
    from auditflow.model.timeutil import from_millis, to_millis

    value = datetime(2243, 1, 1, 0, 0, 0, 1000, tzinfo=UTC)
    assert to_millis(value) == 8_615_030_400_001
    assert from_millis(8_615_030_400_001) == value


@pytest.mark.parametrize("body", [{}, {"note": ""}, {"note": "  \n"}, {"status": None, "note": None}])
def test_alert_update_needs_a_status_or_a_non_blank_note(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match="give a status, a note or both"):
        AlertUpdate.model_validate(body)


def test_a_blank_note_beside_a_status_is_no_note() -> None:
    update = AlertUpdate.model_validate({"status": "resolved", "note": " "})
    assert (update.status, update.note) == (AlertStatus.RESOLVED, None)
    assert AlertUpdate(note=" kept as written ").note == " kept as written "


def test_schema_export_refuses_options_instead_of_writing_a_directory_named_after_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from auditflow.model.schema import main as export

    monkeypatch.chdir(tmp_path)
    assert export(["--help"]) == 0
    assert export(["--bogus"]) == 2
    assert "usage: python -m auditflow.model.schema [DIR]" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
