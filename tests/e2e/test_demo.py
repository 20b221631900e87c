"""`topicdesk demo`: the story plays on the real desk, and tells what really happened."""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
import structlog

from bot.demo import FAST_SCALE, DemoOptions, play
from bot.demo.script import (
    ALICE,
    BRUNOS_COMMENT,
    BRUNOS_RATING,
    CAST,
    DANA,
    ELI,
    LOG_LINES,
    NOTE,
    Scene,
    Story,
    alice_writes_in,
)
from bot.demo.transcript import wants_colour
from bot.fake_telegram import GROUP_ID

ANSI = "\x1b["


@pytest.fixture(autouse=True)
def logging_put_back() -> Iterator[None]:
    """The sandbox sends the process's log to a file of its own, which it closes when it
    stops; the tests after these must not write to a closed file."""
    config = structlog.get_config()
    root, events = logging.getLogger(), logging.getLogger("aiogram.event")
    handlers, level, events_level = root.handlers[:], root.level, events.level
    yield
    structlog.configure(**config)
    root.handlers[:] = handlers
    root.setLevel(level)
    events.setLevel(events_level)


def card_edits(transcript: str, topic: str) -> list[str]:
    """Each edit of the card in `topic` (a line's label) the transcript shows: its lines."""
    lines = transcript.splitlines()
    edits = []
    for index, line in enumerate(lines):
        if line.startswith(topic + "Bot: ✎ edited the card:"):
            rest = itertools.takewhile(lambda more: more.startswith(" "), lines[index + 1 :])
            edits.append("\n".join([line, *rest]))
    return edits


def lines_after(text: str, start: str) -> list[str]:
    """The transcript's lines from the first one that starts with `start`."""
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith(start))
    return lines[first:]


async def test_three_customers_are_served_and_a_429_is_absorbed() -> None:
    out = io.StringIO()
    summary = await play(DemoOptions(fast=True, color="never"), out)
    transcript = out.getvalue()

    assert summary.failure is None, transcript
    # Every message the story sent to the other side arrived there, once: the log, and at
    # least each customer's first words; an answer to each.
    assert summary.customer_messages >= len(LOG_LINES) + len(CAST)
    assert summary.reached_topics == summary.copies_in_topics == summary.customer_messages
    assert summary.agent_messages >= len(CAST)
    assert summary.reached_customers == summary.copies_to_customers == summary.agent_messages
    # The burst met Telegram's own 429, and every refused call went out again.
    assert summary.too_many_requests >= 1
    assert summary.absorbed == summary.too_many_requests
    assert summary.counted_by_desk == summary.too_many_requests
    assert all(waited >= 1.0 for waited in summary.waited)  # retry_after is at least 1 s
    assert summary.dead_letters == 0
    # Eli took Bruno's ticket and resolved it; Dana closed Alice's; both were told.
    assert (
        summary.tickets_opened,
        summary.tickets_assigned,
        summary.tickets_resolved,
        summary.tickets_closed,
        summary.closed_and_told,
    ) == (3, 1, 1, 1, 2)
    assert all(r.seconds is not None for r in summary.first_responses), summary.first_responses
    # Dana's canned reply is one of the agent messages that reached their customer.
    assert (summary.canned_replies, summary.canned_arrived) == (1, 1)
    # Eli's note stayed in the topic: kept, marked, and in no customer's chat.
    assert (summary.notes, summary.notes_kept, summary.notes_marked) == (1, 1, 1)
    assert summary.notes_leaked == 0
    # Bruno's rating, as the desk's database holds it.
    rated = [(r.ticket, r.customer, r.score, r.comment) for r in summary.ratings]
    assert rated == [(2, "Bruno", BRUNOS_RATING, BRUNOS_COMMENT)]

    # Both sides, marked.
    assert "[Alice · private]    Alice: Hi! I was charged twice" in transcript
    assert "[#1 Billing · topic] Bot → copy of Alice: Hi! I was charged twice" in transcript
    assert "[#1 Billing · topic] Dana: Hi Alice, I'm Dana." in transcript
    assert "[Alice · private]    Bot → copy of Dana: Hi Alice, I'm Dana." in transcript
    assert "Alice pressed [Billing]" in transcript
    assert "Bot → copy of Bruno: 📷 photo “the error I get”" in transcript
    assert "Bot → copy of Bruno: 🖼 album of 3 photos" in transcript
    # Alice's reply to Dana is a reply on both sides.
    asked = "Thank you! Will the refund show on this month's statement?"
    for side in ("[Alice · private]    Alice: ", "[#1 Billing · topic] Bot → copy of Alice: "):
        message, reply = lines_after(transcript, side + asked)[:2]
        assert reply.strip().startswith("↪ a reply to Dana's “Hi Alice, I'm Dana."), message
    assert "⚠ Telegram answered 429 to copyMessage" in transcript
    assert "and sent it again: accepted" in transcript
    assert "Telegram answered 429 retry after" in transcript
    assert "the desk waited and resent: nothing lost" in transcript
    assert "Your ticket #1 is closed." in transcript
    assert f"{FAST_SCALE:g}× faster" in transcript
    assert ANSI not in transcript

    # Eli takes Bruno's ticket: the topic is told, the card and the topic's name show him.
    bruno = "[#2 Technical problem · topic] "
    assert bruno + "Eli pressed [🙋 Take]" in transcript
    assert bruno + "Bot: 👤 Assigned to Eli Support." in transcript
    assert bruno + "Bot: ✎ edited the card: Priority: normal · Assignee: Eli Support" in transcript
    assert "renamed the topic “#2 · Bruno Costa · Technical problem → Eli Support”" in transcript
    # The note shows in the topic, marked ✍ by the bot, and in no private chat.
    assert bruno + f"Eli: {NOTE}" in transcript
    assert bruno + "Bot: reacted ✍ to Eli's “// crash is the known" in transcript
    private = [line for line in transcript.splitlines() if " · private]" in line]
    assert not [line for line in private if "4.2.1 bug" in line]
    # Dana's /canned sends the filled-in text to Alice, as a reply to her question.
    canned = (
        "[Alice · private]    Bot → canned reply by Dana: A refund shows on your statement "
        "within 3 to 5 working days (ticket #1). — Dana Support"
    )
    message, reply = lines_after(transcript, canned)[:2]
    assert reply.strip().startswith("↪ a reply to Alice's “Thank you! Will the refund"), message
    assert "[#1 Billing · topic] Bot: reacted 👌 to Dana's “/canned refund_timing”" in transcript
    # Eli resolves; Bruno is told, rates 5 and comments; the card shows the rating.
    assert bruno + "Eli pressed [✅ Resolve]" in transcript
    assert "[Bruno · private]    Bot: Your ticket #2 is marked as resolved." in transcript
    assert "[Bruno · private]    Bruno pressed [5 ⭐]" in transcript
    assert "edited its message: You rated ticket #2 5/5. Thank you!" in transcript
    assert f"[Bruno · private]    Bruno: {BRUNOS_COMMENT}" in transcript
    rating = f"Rating: ⭐⭐⭐⭐⭐ 5/5 · “{BRUNOS_COMMENT}”"
    assert any(rating in edit for edit in card_edits(transcript, bruno)), transcript
    assert "Notes            1, none reached a customer" in transcript
    assert f"Ratings          1: #2 Bruno 5/5 ‘{BRUNOS_COMMENT}’" in transcript


async def refuse_the_next_copy_into_the_group(story: Story) -> None:
    story.telegram.fail(
        "copyMessage",
        error_code=400,
        description="Bad Request: message to copy not found",
        chat_id=GROUP_ID,
    )


async def test_a_message_the_desk_could_not_relay_shows_as_missing_and_fails_the_demo() -> None:
    out = io.StringIO()
    scenes = (
        Scene("Telegram will refuse a copy", refuse_the_next_copy_into_the_group),
        Scene("Alice writes in", alice_writes_in),
    )
    summary = await play(DemoOptions(fast=True, color="never"), out, scenes=scenes)
    transcript = out.getvalue()

    assert summary.failure == "1 of 1 customer messages never reached their topic.", transcript
    assert (summary.customer_messages, summary.reached_topics) == (1, 0)
    assert "copyMessage: message to copy not found" in summary.dead_letter_reasons
    assert "Bot → copy of Alice" not in transcript
    assert "[Alice · private]    Bot: ⚠ we could not pass this message" in transcript
    assert "✘ 1 of 1 customer messages never reached their topic." in transcript


async def eli_writes_a_note_without_its_prefix(story: Story) -> None:
    story.notes_down(ELI, ALICE, NOTE.removeprefix("//").strip())  # an answer, then


async def test_a_note_that_reached_a_customer_fails_the_demo() -> None:
    out = io.StringIO()
    scenes = (
        Scene("Alice writes in", alice_writes_in),
        Scene("Eli forgets the note's prefix", eli_writes_a_note_without_its_prefix),
    )
    summary = await play(DemoOptions(fast=True, color="never"), out, scenes=scenes)
    transcript = out.getvalue()

    assert summary.failure == "1 of 1 internal notes reached a customer.", transcript
    assert (summary.notes, summary.notes_leaked, summary.notes_marked) == (1, 1, 0)
    assert "[Alice · private]    Bot → copy of Eli: crash is the known 4.2.1 bug" in transcript
    assert "✘ 1 of 1 internal notes reached a customer." in transcript


async def dana_sends_a_canned_reply_telegram_refuses(story: Story) -> None:
    story.telegram.fail(
        "sendMessage",
        error_code=400,
        description="Bad Request: message text is empty",
        chat_id=ALICE.user_id,
    )
    story.sends_canned(DANA, ALICE, "refund_timing")


async def test_a_canned_reply_that_never_arrived_fails_the_demo() -> None:
    out = io.StringIO()
    scenes = (
        Scene("Alice writes in", alice_writes_in),
        Scene("Telegram refuses Dana's canned reply", dana_sends_a_canned_reply_telegram_refuses),
    )
    summary = await play(DemoOptions(fast=True, color="never"), out, scenes=scenes)
    transcript = out.getvalue()

    assert summary.failure == "1 of 1 agent messages never reached their customer.", transcript
    assert (summary.canned_replies, summary.canned_arrived, summary.reached_customers) == (1, 0, 0)
    assert "sendMessage: message text is empty" in summary.dead_letter_reasons
    assert "canned reply by Dana" not in transcript


def test_colour_only_on_a_terminal_and_never_against_no_color() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert wants_colour("auto", Terminal(), {})
    assert not wants_colour("auto", Terminal(), {"NO_COLOR": "1"})
    assert not wants_colour("auto", io.StringIO(), {})
    assert wants_colour("always", io.StringIO(), {"NO_COLOR": "1"})
    assert not wants_colour("never", Terminal(), {})


class Run(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


class Commands(NamedTuple):
    plain: subprocess.Popen[str]  # topicdesk demo --fast
    keeping: subprocess.Popen[str]  # the same with --keep
    kept: Path


def installed_command() -> Path:
    """The `topicdesk` script of this Python's environment (in CI, the installed wheel's)."""
    script = Path(sys.executable).with_name("topicdesk")
    assert script.exists(), f"no topicdesk script beside {sys.executable}"
    return script


def without_topicdesk_variables() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if not name.startswith("TOPICDESK_")}


@pytest.fixture(scope="module", autouse=True)
def commands(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Commands]:
    """`topicdesk demo --fast`, and the same with `--keep`, started before this module's
    first test (each spends seconds importing aiogram, while the tests here play the demo
    in this process), from an empty folder with no TOPICDESK_* variable."""
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    kept = tmp_path_factory.mktemp("kept") / "demo.db"
    command = [str(installed_command()), "demo", "--fast"]
    with contextlib.ExitStack() as stack:
        plain, keeping = (
            stack.enter_context(
                subprocess.Popen(
                    args,
                    cwd=elsewhere,
                    env=without_topicdesk_variables(),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    encoding="utf-8",
                    errors="replace",
                )
            )
            for args in (command, [*command, "--keep", str(kept)])
        )
        for process in (plain, keeping):
            stack.callback(_stop, process)
        yield Commands(plain, keeping, kept)
    assert not list(elsewhere.iterdir()), "the demo left files where it was run"


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
        process.communicate()


def finished(process: subprocess.Popen[str]) -> Run:
    try:
        stdout, stderr = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
    return Run(process.returncode, stdout, stderr)


def test_the_installed_command_runs_anywhere_without_configuration(commands: Commands) -> None:
    run = finished(commands.plain)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "✔ Every message reached the other side" in run.stdout
    assert "[#1 Billing · topic]" in run.stdout
    assert "Notes            1, none reached a customer" in run.stdout
    assert ANSI not in run.stdout  # piped: plain


def test_the_kept_database_holds_the_tickets(commands: Commands) -> None:
    run, kept = finished(commands.keeping), commands.kept
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"The desk's database is kept at {kept}" in run.stdout
    assert kept.read_bytes()[:16] == b"SQLite format 3\x00"
    with contextlib.closing(sqlite3.connect(f"file:{kept}?mode=ro", uri=True)) as db:
        statuses = sorted(row[0] for row in db.execute("SELECT status FROM tickets"))
        assignees = list(db.execute("SELECT id, assignee_id FROM tickets WHERE assignee_id > 0"))
        rated = list(db.execute("SELECT ticket_id, score, comment FROM ratings"))
        notes = list(db.execute("SELECT ticket_id, text FROM notes"))
        canned = list(
            db.execute(
                "SELECT ticket_id, target_chat_id FROM messages "
                "WHERE kind = 'canned' AND target_message_id IS NOT NULL"
            )
        )
    assert len(statuses) == 3
    assert (statuses.count("closed"), statuses.count("resolved")) == (1, 1)
    assert assignees == [(2, ELI.user_id)]
    assert rated == [(2, BRUNOS_RATING, BRUNOS_COMMENT)]
    assert notes == [(2, NOTE.removeprefix("//").strip())]
    assert canned == [(1, ALICE.user_id)]  # the desk recorded its delivery to Alice

    config = kept.with_name(kept.name + ".toml")
    assert f"topicdesk dlq list --config {config}" in run.stdout
    listed = subprocess.run(
        [str(installed_command()), "dlq", "list", "--config", str(config)],
        cwd=kept.parent,
        env=without_topicdesk_variables(),
        capture_output=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )
    assert listed.returncode == 0, listed.stdout + listed.stderr
