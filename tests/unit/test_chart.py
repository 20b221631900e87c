"""The /stats chart: a PNG of tickets per day and first response times, drawn by a library
the idle daemon never loads."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from datetime import UTC, datetime
from pathlib import Path

from bot.services import chart
from storage.stats import Day, Report, Timing, period
from storage.tickets import Status

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2025, 3, 31, 10, 0, tzinfo=UTC)


def a_report(name: str = "7d", *, quiet: bool = False) -> Report:
    span = period(name, NOW, "Europe/Berlin")
    days = tuple(
        Day(day, 0, Timing(0, None, None))
        if quiet or number % 3 == 1  # some days with nothing answered: gaps in the lines
        else Day(day, 10 + number, Timing(8, 600.0 + 60 * number, 1800.0 + 300 * number))
        for number, day in enumerate(span.days)
    )
    return Report(
        period=span,
        received=sum(day.received for day in days),
        by_status=dict.fromkeys(Status, 0),
        first_response=Timing(0, None, None),
        resolution=Timing(0, None, None),
        csat_average=None,
        csat_count=0,
        first_response_breaches=0,
        resolution_breaches=0,
        days=days,
        agents=(),
    )


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, after checking the signature and CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR")
    (crc,) = struct.unpack(">I", data[29:33])
    assert crc == zlib.crc32(data[12:29])
    width, height = struct.unpack(">II", data[16:24])
    assert data[-12:] == b"\x00\x00\x00\x00IEND\xaeB`\x82"
    return width, height


def test_the_chart_is_a_png_of_800_by_450() -> None:
    png = chart.render(a_report())

    assert png_size(png) == (800, 450)
    assert len(png) > 10_000  # bars, lines, labels: not an empty canvas


def test_a_quiet_period_and_a_month_draw_too() -> None:
    assert png_size(chart.render(a_report("today", quiet=True))) == (800, 450)
    assert png_size(chart.render(a_report("30d"))) == (800, 450)


def test_the_title_names_the_period_and_its_days() -> None:
    assert chart.title(a_report()) == ("Tickets and first response · last 7 days (25 Mar – 31 Mar)")
    assert chart.title(a_report("today")) == "Tickets and first response · today (31 Mar)"


def test_importing_the_chart_module_does_not_load_matplotlib() -> None:
    probe = (
        "import sys, bot.services.chart; "
        "print(sorted(m for m in ('matplotlib', 'numpy', 'aiogram') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()

    assert loaded == "[]"
