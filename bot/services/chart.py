"""The /stats chart: tickets received per day as bars, first response times as lines.

matplotlib (and numpy under it, some 40 MB) is imported inside `render` only, the first
time a chart is asked for, so an idle daemon never carries it. It draws on a bare
`Figure` with the Agg canvas, never through pyplot: no global figure registry, no GUI
backend, and the figure is freed when `render` returns.
"""

from __future__ import annotations

import io
import math
from datetime import date

from storage.stats import Report

_SHORT_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_SHORT_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_PERIOD_TITLES = {"today": "today", "7d": "last 7 days", "30d": "last 30 days"}
WIDTH, HEIGHT, DPI = 8.0, 4.5, 100  # inches, and dots per inch: 800 × 450 pixels
BAR_COLOR = "#9ecae1"
P50_COLOR = "#08519c"
P90_COLOR = "#de2d26"


def _day_label(day: date, *, with_weekday: bool) -> str:
    label = f"{day.day} {_SHORT_MONTHS[day.month - 1]}"
    return f"{_SHORT_DAYS[day.weekday()]}\n{label}" if with_weekday else label


def title(report: Report) -> str:
    """The chart's title, e.g. "Tickets and first response · last 7 days (1 Dec – 7 Dec)"."""
    days = report.period.days
    span = _day_label(days[0], with_weekday=False)
    if len(days) > 1:
        span = f"{span} – {_day_label(days[-1], with_weekday=False)}"
    name = _PERIOD_TITLES.get(report.period.name, report.period.name)
    return f"Tickets and first response · {name} ({span})"


def _time_unit(longest: float) -> tuple[str, float]:
    """Minutes for short times, hours for long ones: the unit's name and its seconds."""
    return ("hours", 3600.0) if longest > 3 * 3600 else ("minutes", 60.0)


def render(report: Report) -> bytes:
    """The chart of `report`'s days as a PNG (800 × 450): bars of tickets received per
    day, lines of the median and 90th-percentile first response of those answered.

    Some 0.3-0.5 s of CPU (plus about a second to import matplotlib the first time): call
    it from a worker thread, one chart at a time (`await asyncio.to_thread(render, r)`
    under a lock), so the event loop keeps polling and sending.
    """
    # Imported here, not at the top: see the module's docstring.
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415
    from matplotlib.ticker import MaxNLocator  # noqa: PLC0415

    days = report.period.days
    positions = list(range(len(days)))
    received = [day.received for day in report.days]
    p50s = [day.first_response.p50 for day in report.days]
    p90s = [day.first_response.p90 for day in report.days]
    unit, size = _time_unit(max((v for v in p90s if v is not None), default=0.0))

    figure = Figure(figsize=(WIDTH, HEIGHT), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    bars = figure.add_subplot()
    bars.bar(positions, received, color=BAR_COLOR, width=0.7, label="Tickets received")
    bars.set_ylabel("Tickets received")
    bars.set_xlabel(f"Day received ({report.period.time_zone})")
    bars.set_ylim(0, max([*received, 1]) * 1.15)
    bars.yaxis.set_major_locator(MaxNLocator(integer=True))
    step = max(1, math.ceil(len(days) / 10))  # at most about ten labels
    shown = positions[::-1][::step][::-1]  # always label the last day (today)
    bars.set_xticks(shown, [_day_label(days[i], with_weekday=len(days) <= 10) for i in shown])
    pad = max(0.0, (5 - len(days)) / 2)  # a day or two: narrower bars, not one wide block
    bars.set_xlim(-0.6 - pad, len(days) - 0.4 + pad)
    bars.set_title(title(report), fontsize=11)
    bars.spines[["top"]].set_visible(False)

    times = bars.twinx()

    def line(values: list[float | None]) -> list[float]:
        return [math.nan if v is None else v / size for v in values]

    marker = "o" if len(days) <= 10 else "."
    times.plot(
        positions, line(p50s), color=P50_COLOR, marker=marker, label="First response, median"
    )
    times.plot(
        positions,
        line(p90s),
        color=P90_COLOR,
        marker=marker,
        linestyle="--",
        label="First response, 90th percentile",
    )
    times.set_ylabel(f"First response ({unit})")
    times.set_ylim(0, max([v for v in line(p90s) if not math.isnan(v)] + [1.0]) * 1.15)
    times.spines[["top"]].set_visible(False)

    handles, labels = bars.get_legend_handles_labels()
    more_handles, more_labels = times.get_legend_handles_labels()
    figure.legend(
        handles + more_handles,
        labels + more_labels,
        loc="outside lower center",  # below the axes: it never hides a bar or a point
        ncols=3,
        fontsize=8,
        frameon=False,
    )

    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=DPI)
    return png.getvalue()
