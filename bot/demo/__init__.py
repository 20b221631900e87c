"""`topicdesk demo`: watch the desk serve three customers, before creating any bot.

The real daemon (the poller, the outbox, the sender and its rate limiter, as `topicdesk
run` has them) runs against the embedded Telegram on 127.0.0.1 with a temporary database
(`bot.sandbox`): no token, no config file, no network. The story (`script`) has customers
fill the intake form and agents answer in the topics, take, note, resolve and close the
tickets, and a customer rate one; the transcript (`transcript`) shows each chat as it
fills; the summary (`summary`) gives the figures from the embedded Telegram's records and
the desk's database.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

from bot.demo.ledger import Ledger
from bot.demo.script import (
    CANNED,
    PATIENCE,
    SCENES,
    Pacing,
    Scene,
    Story,
    StoryStalledError,
)
from bot.demo.summary import (
    DESK_429_METRIC,
    Summary,
    kept_database_lines,
    render_summary,
    summarise,
)
from bot.demo.transcript import Style, Transcript, wants_colour
from bot.fake_telegram import GROUP_ID
from bot.preflight import StartupError
from bot.sandbox import CUSTOMERS, Sandbox
from storage.files import DatabaseFileError
from storage.migrations import MigrationError

__all__ = ["DemoOptions", "Summary", "play", "run_demo"]

# Telegram's limits on a clock this many times faster: a group's 20 sends a minute become
# 20 per 6 s, so the burst's 429 costs seconds, not a minute.
SCALE = 10.0
# --fast (for the tests): 20 per 4 s. The desk sends a burst's 21 group messages as fast
# as Telegram answers; on a loaded 2-core machine that has taken over 2 s, so the window
# is wide enough for them all to fall in it and meet the 429.
FAST_SCALE = 15.0
# The desk is told that a group takes one send more per window than Telegram allows, so
# the burst meets Telegram's real 429 and the desk must wait out its retry_after; its
# canned responses are the story's.
OVERRIDES: Mapping[str, Mapping[str, object]] = {
    "delivery": {"group_per_window": 21},
    "canned": CANNED,
}
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """How to play the demo (the command's options)."""

    speed: float = 1.0
    fast: bool = False
    keep: Path | None = None
    color: str = "auto"

    @property
    def scale(self) -> float:
        return FAST_SCALE if self.fast else SCALE

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DemoOptions:
        speed = float(args.speed)
        if not speed > 0:
            raise ValueError(f"--speed must be more than 0, not {args.speed:g}")
        keep = Path(args.keep).absolute() if args.keep is not None else None
        return cls(speed=speed, fast=bool(args.fast), keep=keep, color=str(args.color))


def run_demo(args: argparse.Namespace) -> int:
    """`topicdesk demo`: play the story, print the transcript and the summary; 0 if every
    message arrived, the 429 was absorbed and nothing became a dead letter."""
    try:
        options = DemoOptions.from_args(args)
    except ValueError as exc:
        sys.stderr.write(f"topicdesk: {exc}\n")
        return EXIT_USAGE
    out = _printable(sys.stdout)
    try:
        summary = asyncio.run(play(options, out))
    except (StartupError, DatabaseFileError, MigrationError) as exc:
        sys.stderr.write(f"topicdesk: the demo's desk could not start: {exc}\n")
        return EXIT_FAILED
    if summary.failure is not None:
        sys.stderr.write(f"topicdesk: the demo failed: {summary.failure}\n")
        return EXIT_FAILED
    return EXIT_OK


async def play(
    options: DemoOptions,
    out: TextIO,
    *,
    scenes: Sequence[Scene] = SCENES,
    environ: Mapping[str, str] | None = None,
) -> Summary:
    """Play the story (`scenes`) on an embedded desk, writing the transcript and the
    summary to `out`; colour follows `options.color` and `environ` (os.environ)."""
    started = time.monotonic()
    style = Style(wants_colour(options.color, out, os.environ if environ is None else environ))
    async with Sandbox(scale=options.scale, database=options.keep, overrides=OVERRIDES) as box:
        _write(out, _introduction(box, style))
        ledger = Ledger(box.telegram)
        transcript = Transcript(box.telegram, ledger, CUSTOMERS, out, style)
        story = Story(box, transcript, ledger, Pacing(options.speed, fast=options.fast))
        stalled = await _tell(story, transcript, scenes)
        assert box.daemon is not None
        counted = box.daemon.metrics.registry.get_sample_value(DESK_429_METRIC) or 0.0
        summary = await summarise(
            story, wall_time=0.0, counted_by_desk=int(counted), stalled=stalled
        )
    summary = replace(summary, wall_time=time.monotonic() - started)
    _write(out, render_summary(summary, style))
    if options.keep is not None:
        _write(out, kept_database_lines(options.keep, _offline_config(options.keep), style))
    return summary


async def _tell(story: Story, transcript: Transcript, scenes: Sequence[Scene]) -> str | None:
    """Play every scene and let the desk finish; why the story stalled, or None."""
    transcript.start()
    try:
        for number, scene in enumerate(scenes, 1):
            transcript.scene(number, scene.title)
            await scene.play(story)
        await story.sandbox.settled(timeout=PATIENCE)
    except (StoryStalledError, TimeoutError) as exc:
        return str(exc)
    finally:
        await transcript.stop()
    return None


def _introduction(box: Sandbox, style: Style) -> list[str]:
    limits = box.telegram.limits
    assert limits is not None
    window = 60 / limits.time_scale
    return [
        style("TopicDesk demo", Style.BOLD)
        + ": the real desk (poller, outbox, sender, rate limiter) against an embedded",
        "Telegram on 127.0.0.1, with a temporary database: no token, no network.",
        f"Telegram's limits run {box.scale:g}× faster: a group takes "
        f"{limits.group_per_minute} messages per {window:g} s.",
        f"{style('[Alice · private]', Style.CYAN)} is a customer's chat with the bot; "
        f"{style('[#1 Billing · topic]', Style.MAGENTA)} a ticket's topic in the agents' group.",
    ]


def _offline_config(database: Path) -> Path | None:
    """A config file beside a kept database, for `topicdesk dlq list --config ...`; None if
    a file is already there (it is never overwritten)."""
    path = database.with_name(database.name + ".toml")
    text = "\n".join(
        [
            "# Written by `topicdesk demo --keep`, to point the offline commands (dlq, updates,",
            "# backup) at the demo's database. No bot is behind it: the token is a placeholder.",
            "[telegram]",
            'token = "123456:demo-placeholder"',
            "",
            "[support]",
            f"group_id = {GROUP_ID}",
            "",
            "[storage]",
            f"path = {json.dumps(str(database))}",
            "",
        ]
    )
    try:
        with path.open("x", encoding="utf-8") as file:
            file.write(text)
    except OSError:
        return None
    return path


def _printable(stream: TextIO) -> TextIO:
    """The transcript has emoji and typographic marks: on a terminal or pipe whose
    encoding lacks them, they are replaced rather than stopping the demo."""
    if isinstance(stream, io.TextIOWrapper) and "utf" not in (stream.encoding or "").lower():
        stream.reconfigure(errors="replace")
    return stream


def _write(out: TextIO, lines: Iterable[str]) -> None:
    for line in lines:
        out.write(line + "\n")
    out.flush()
