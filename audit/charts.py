"""Charts for the usage page, drawn on the server as SVG: coordinates here, markup in templates/htmx/chart.svg.

No chart library: a few bars and lines over at most a few dozen buckets are simpler to compute than to
configure, and the page stays readable without JavaScript.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

# Drawn at about the size a third of the page shows it, so its 10 px labels stay readable.
WIDTH = 380
HEIGHT = 170
LEFT = 40  # room for the y labels
BOTTOM = 20  # room for the x labels
TOP = 8


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    css: str
    title: str


@dataclass(frozen=True)
class Line:
    css: str
    points: str
    dots: list[tuple[float, float, str]]


@dataclass
class Chart:
    width: int = WIDTH
    height: int = HEIGHT
    bars: list[Bar] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    x_labels: list[tuple[float, str]] = field(default_factory=list)
    left: int = LEFT
    baseline: float = HEIGHT - BOTTOM

    @property
    def empty(self) -> bool:
        return not any(bar.height for bar in self.bars) and not any(line.dots for line in self.lines)


def _nice_max(value: float) -> float:
    """The next round number at or above ``value`` (1, 2, 2.5 or 5 times a power of ten)."""
    if value <= 0:
        return 1.0
    power = 10 ** len(str(int(value))) / 10
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def _short(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value / 1000:.1f} s" if value >= 1000 else f"{value:.0f} ms"
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 1000:
        return f"{value / 1000:.1f}k"
    return f"{value:.0f}"


def _frame(chart: Chart, starts: Sequence[datetime], top: float, unit: str, label_format: str) -> float:
    """Ticks and labels; returns the width of one bucket."""
    plot_height = chart.baseline - TOP
    chart.y_ticks = [(chart.baseline - plot_height * share, _short(top * share, unit)) for share in (0, 0.5, 1)]
    slot = (chart.width - chart.left) / max(1, len(starts))
    every = max(1, len(starts) // 6)
    # Every few buckets, and none so near the right edge that it would be cut off.
    chart.x_labels = [
        (x, start.strftime(label_format))
        for index, start in enumerate(starts)
        if index % every == 0 and (x := chart.left + slot * index + slot / 2) < chart.width - 16
    ]
    return slot


def bar_chart(
    starts: Sequence[datetime],
    series: Sequence[tuple[str, str, Sequence[float]]],
    *,
    unit: str = "",
    label_format: str = "%H:%M",
) -> Chart:
    """Side-by-side bars per bucket; ``series`` is (name, css class, one value per bucket)."""
    chart = Chart()
    top = _nice_max(max((value for _, _, values in series for value in values), default=0))
    slot = _frame(chart, starts, top, unit, label_format)
    plot_height = chart.baseline - TOP
    width = max(1.0, slot * 0.8 / max(1, len(series)))
    for index, start in enumerate(starts):
        for position, (name, css, values) in enumerate(series):
            value = values[index]
            height = plot_height * value / top
            x = chart.left + slot * index + slot * 0.1 + width * position
            title = f"{start:%Y-%m-%d %H:%M}: {_short(value, unit)} {name}"
            chart.bars.append(Bar(x, chart.baseline - height, width, height, css, title))
    return chart


def line_chart(
    starts: Sequence[datetime],
    series: Sequence[tuple[str, str, Sequence[float | None]]],
    *,
    unit: str = "ms",
    label_format: str = "%H:%M",
) -> Chart:
    """One line per series through the buckets that have a value (gaps where none)."""
    chart = Chart()
    top = _nice_max(max((value for _, _, values in series for value in values if value is not None), default=0))
    slot = _frame(chart, starts, top, unit, label_format)
    plot_height = chart.baseline - TOP
    for name, css, values in series:
        dots = [
            (chart.left + slot * index + slot / 2, chart.baseline - plot_height * value / top,
             f"{starts[index]:%Y-%m-%d %H:%M}: {name} {_short(value, unit)}")
            for index, value in enumerate(values)
            if value is not None
        ]  # fmt: skip
        chart.lines.append(Line(css, " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in dots), dots))
    return chart
