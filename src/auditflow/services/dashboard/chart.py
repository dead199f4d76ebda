"""Geometry of the alerts-over-time bar chart, computed once in Python: the template draws it as SVG
for the first paint, and the page script redraws it from the same numbers served as JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from auditflow.model.alert import TimeBucket
from auditflow.model.timeutil import from_millis, to_millis

WIDTH = 1360
HEIGHT = 200
LEFT = 44  # room for the y-axis labels
BOTTOM = 26  # room for the x-axis labels
TOP = 10


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    count: int
    title: str


@dataclass(frozen=True, slots=True)
class Tick:
    position: float
    label: str


@dataclass(slots=True)
class Chart:
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    baseline: float = HEIGHT - BOTTOM
    bars: list[Bar] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    total: int = 0
    peak: int = 0
    summary: str = ""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2 or 5 times a power of ten that is at least `value` (and at least 1)."""
    magnitude = 1
    while True:
        for step in (1, 2, 5):
            if step * magnitude >= value:
                return step * magnitude
        magnitude *= 10


def _bucket_starts(since: datetime, until: datetime, bucket_seconds: int) -> list[int]:
    step = bucket_seconds * 1000
    first = to_millis(since) // step * step
    end = to_millis(until)
    return list(range(first, end, step)) or [first]


def _label(moment: datetime, span: timedelta) -> str:
    return moment.strftime("%H:%M") if span <= timedelta(days=2) else moment.strftime("%b %d")


def build_chart(buckets: list[TimeBucket], since: datetime, until: datetime, bucket_seconds: int) -> Chart:
    """Bars for every bucket between `since` and `until`, empty buckets included."""
    starts = _bucket_starts(since, until, bucket_seconds)
    step = bucket_seconds * 1000
    counts = [0] * len(starts)
    for bucket in buckets:
        index = (to_millis(bucket.start) - starts[0]) // step
        if 0 <= index < len(counts):
            counts[index] += bucket.count
    chart = Chart(total=sum(counts), peak=max(counts))
    # Twice a round number: the middle grid line then sits on a whole, round count too.
    top = 2 * nice_ceiling(-(-chart.peak // 2))
    plot_width = WIDTH - LEFT
    plot_height = chart.baseline - TOP
    slot = plot_width / len(starts)
    gap = min(4.0, slot * 0.2)
    span = until - since
    for index, (start, count) in enumerate(zip(starts, counts, strict=True)):
        height = plot_height * count / top
        moment = from_millis(start).astimezone(UTC)
        chart.bars.append(
            Bar(
                x=round(LEFT + index * slot + gap / 2, 2),
                y=round(chart.baseline - height, 2),
                width=round(slot - gap, 2),
                height=round(height, 2),
                count=count,
                title=f"{moment:%Y-%m-%d %H:%M} UTC: {count} alert{'s' if count != 1 else ''}",
            )
        )
    chart.y_ticks = [
        Tick(position=round(chart.baseline - plot_height * i / 2, 2), label=_fmt_count(top * i / 2)) for i in range(3)
    ]
    label_every = max(1, round(len(starts) / 8))
    for index in range(0, len(starts), label_every):
        moment = from_millis(starts[index])
        chart.x_ticks.append(Tick(position=round(LEFT + index * slot + slot / 2, 2), label=_label(moment, span)))
    chart.summary = f"{chart.total} alerts, at most {chart.peak} per {_fmt_duration(bucket_seconds)}"
    return chart


def _fmt_count(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:.1f}"


def _fmt_duration(seconds: int) -> str:
    if seconds % 86400 == 0:
        return f"{seconds // 86400} day" if seconds == 86400 else f"{seconds // 86400} days"
    if seconds % 3600 == 0:
        return "hour" if seconds == 3600 else f"{seconds // 3600} hours"
    return f"{seconds // 60} minutes"
