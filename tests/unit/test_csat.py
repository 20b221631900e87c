"""The rules of a rating and of the clock on a ticket, without Telegram."""

from __future__ import annotations

import pytest

from bot.services import csat
from bot.services.cards import duration, rating_line
from storage.ratings import Rating
from storage.tickets import Status


@pytest.mark.parametrize(
    ("before", "after", "asked"),
    [
        (Status.OPEN, Status.RESOLVED, True),
        (Status.PENDING, Status.CLOSED, True),
        (Status.OPEN, Status.CLOSED, True),
        (Status.RESOLVED, Status.CLOSED, False),  # one piece of work, asked once
        (Status.CLOSED, Status.OPEN, False),
        (Status.OPEN, Status.PENDING, False),
    ],
)
def test_a_ticket_is_asked_to_be_rated_once_per_piece_of_work(
    before: Status, after: Status, asked: bool
) -> None:
    assert csat.finished(before, after) is asked


def test_rating_buttons_fit_telegrams_64_bytes_and_forged_scores_are_not_scores() -> None:
    biggest = 10**18 - 1
    row = csat.keyboard(biggest, chosen=3)[0]
    assert [button["text"] for button in row] == ["1 ⭐", "2 ⭐", "• 3 ⭐", "4 ⭐", "5 ⭐"]
    assert all(len(button["callback_data"].encode()) <= 64 for button in row)
    assert len(csat.button_data(biggest, csat.SKIP).encode()) <= 64
    assert csat.parse("rate:7:4") == (7, "4")
    assert csat.skip_of("rate:7:skip") == 7
    assert csat.skip_of("rate:7:4") is None
    for choice in ("0", "6", "9", "05", "44", "skip", "x"):
        assert csat.score_of(choice) is None, choice
    assert csat.parse("rate:7:4:extra") is None
    assert csat.parse("t:7:close") is None


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (12, "under a minute"),
        (12 * 60 + 5, "12 min"),
        (3600, "1 h"),
        (3 * 3600 + 20 * 60, "3 h 20 min"),
        (47 * 3600, "47 h"),
        (2 * 86400 + 4 * 3600, "2 d 4 h"),
        (7 * 86400, "7 d"),
    ],
)
def test_durations_read_as_an_agent_would_say_them(seconds: float, shown: str) -> None:
    assert duration(seconds) == shown


def test_the_rating_line_escapes_and_shortens_the_comment() -> None:
    rating = Rating(1, 1001, 4, "<b>great</b> " + "x" * 400, "t", "t")
    line = rating_line(rating)
    assert line.startswith("Rating: ⭐⭐⭐⭐ 4/5 · “&lt;b&gt;great&lt;/b&gt; ")
    assert line.endswith("…”")
    assert len(line) < 400
