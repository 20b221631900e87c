"""A customer fills the intake form, and the agents see the ticket it becomes.

Covers bot/services/intake.py (the form's rules) and bot/services/cards.py (the topic's
name and the ticket card built from the answers).
"""

from __future__ import annotations

import json

import pytest

from bot.config import Question
from bot.services.cards import card_text, topic_name
from bot.services.intake import (
    SKIP,
    Form,
    callback_data,
    check_answer,
    check_choice,
    parse_callback,
    prompt_for,
)
from storage.tickets import Answer, Customer, Priority, Status, Ticket

CATEGORY = Question(
    id="category",
    label="Category",
    prompt="What is your question about?",
    kind="choice",
    options=["Billing", "Technical problem", "Account"],
)
DESCRIPTION = Question(
    id="description",
    prompt="Please describe the problem.",
    kind="text",
    min_length=10,
    max_length=40,
)
ORDER = Question(
    id="order",
    prompt="Your order number?",
    kind="regex",
    pattern=r"\d{6}",
    error="Order numbers have six digits, like 123456.",
)
PHONE = Question(id="phone", prompt="A phone number, if you like.", optional=True)


# --- answers typed by the customer -------------------------------------------------


@pytest.mark.parametrize("typed", ["billing", "  BILLING ", "Billing"])
def test_a_typed_choice_matches_an_option_whatever_its_case(typed: str) -> None:
    assert check_answer(CATEGORY, typed) == ("Billing", "")


def test_a_typed_choice_that_is_no_option_asks_for_a_button() -> None:
    assert check_answer(CATEGORY, "Refunds") == (None, "Please choose one of the buttons below.")


def test_a_text_answer_is_trimmed_and_kept() -> None:
    assert check_answer(DESCRIPTION, "  The app crashes on start.  ") == (
        "The app crashes on start.",
        "",
    )


def test_a_text_answer_too_short_or_too_long_is_asked_again() -> None:
    assert check_answer(DESCRIPTION, "Help") == (None, "Please write at least 10 characters.")
    assert check_answer(DESCRIPTION, "x" * 41) == (None, "Please keep it under 40 characters.")
    assert check_answer(DESCRIPTION, "x" * 40) == ("x" * 40, "")


@pytest.mark.parametrize("sent", [None, "", "   "])
def test_a_message_without_text_is_no_answer(sent: str | None) -> None:
    assert check_answer(DESCRIPTION, sent) == (None, "Please answer in text.")


def test_a_pattern_answer_must_match_whole_and_fails_with_the_configured_error() -> None:
    assert check_answer(ORDER, " 123456 ") == ("123456", "")
    assert check_answer(ORDER, "12345") == (None, "Order numbers have six digits, like 123456.")
    assert check_answer(ORDER, "1234567") == (None, "Order numbers have six digits, like 123456.")


def test_a_pattern_answer_without_a_configured_error_gets_a_generic_one() -> None:
    question = ORDER.model_copy(update={"error": ""})

    value, reason = check_answer(question, "abc")

    assert value is None
    assert reason == "That doesn't look right; please check it and try again."


# --- buttons pressed by the customer -----------------------------------------------


def test_a_button_stands_for_its_option() -> None:
    assert check_choice(CATEGORY, "0") == "Billing"
    assert check_choice(CATEGORY, "2") == "Account"


def test_skip_is_an_empty_answer_only_for_an_optional_question() -> None:
    assert check_choice(PHONE, SKIP) == ""
    assert check_choice(CATEGORY, SKIP) is None


@pytest.mark.parametrize("choice", ["3", "99", "-1", "one"])
def test_a_stale_or_forged_button_is_ignored(choice: str) -> None:
    assert check_choice(CATEGORY, choice) is None


def test_an_option_button_means_nothing_on_a_text_question() -> None:
    assert check_choice(DESCRIPTION, "0") is None


# --- asking the question -----------------------------------------------------------


def test_a_choice_question_comes_with_one_button_per_option() -> None:
    prompt = prompt_for(CATEGORY, step=0, skip_label="Skip")

    assert prompt.text == "What is your question about?"
    assert prompt.buttons == (
        ("Billing", "form:0:0"),
        ("Technical problem", "form:0:1"),
        ("Account", "form:0:2"),
    )


def test_an_optional_question_offers_skip_and_a_failed_answer_says_why_first() -> None:
    prompt = prompt_for(PHONE, step=3, skip_label="Überspringen", reason="Please answer in text.")

    assert prompt.text == "Please answer in text.\n\nA phone number, if you like."
    assert prompt.buttons == (("Überspringen", "form:3:skip"),)


def test_a_text_question_has_no_buttons() -> None:
    assert prompt_for(DESCRIPTION, step=1, skip_label="Skip").buttons == ()


def test_button_data_stays_within_telegrams_64_bytes() -> None:
    many = Question(
        id="many",
        prompt="Pick one",
        kind="choice",
        options=[f"Option {n}" for n in range(100)],
        optional=True,
    )

    prompt = prompt_for(many, step=10_000, skip_label="Skip")

    assert len(prompt.buttons) == 101
    assert all(len(data.encode()) <= 64 for _, data in prompt.buttons)


@pytest.mark.parametrize(
    ("data", "parsed"),
    [
        ("form:0:2", (0, "2")),
        ("form:12:skip", (12, "skip")),
        (callback_data(4, SKIP), (4, "skip")),
        ("form:1:", None),
        ("form:x:1", None),
        ("form:1:2:3", None),
        ("ticket:7:close", None),
        ("", None),
    ],
)
def test_only_our_own_form_buttons_are_understood(data: str, parsed: object) -> None:
    assert parse_callback(data) == parsed


# --- the form kept between messages ------------------------------------------------


def test_a_form_in_progress_round_trips_through_fsm_data() -> None:
    form = Form(
        step=2,
        answers=[["category", "Category", "Billing"], ["phone", "Phone", ""]],
        started_at="2025-03-01T12:30:00.000000+00:00",
        kept=[{"chat_id": 111, "message_id": 5}],
    )

    stored = json.loads(json.dumps(form.to_data()))

    assert Form.from_data(stored) == form


def test_a_new_form_starts_at_the_first_question() -> None:
    assert Form.from_data({}) == Form(step=0, answers=[], started_at="", kept=[])


# --- the ticket as the agents see it -----------------------------------------------


def a_ticket(answers: tuple[Answer, ...], closed_at: str | None = None) -> Ticket:
    return Ticket(
        id=42,
        customer_id=111,
        status=Status.CLOSED if closed_at else Status.OPEN,
        priority=Priority.NORMAL,
        assignee_id=None,
        subject="Billing",
        topic_name=None,
        answers=answers,
        group_chat_id=-1001234567890,
        thread_id=7,
        card_message_id=None,
        previous_ticket_id=None,
        created_at="2025-03-01T12:30:00.000000+00:00",
        first_response_at=None,
        resolved_at=closed_at,
        closed_at=closed_at,
    )


def test_a_topic_is_named_after_the_ticket_the_customer_and_the_subject() -> None:
    assert topic_name(42, " Alice Smith ", "Billing") == "#42 · Alice Smith · Billing"
    assert topic_name(42, "", "") == "#42 · Customer"


def test_a_long_topic_name_is_trimmed_to_telegrams_128_characters() -> None:
    name = topic_name(123456, "A" * 100, "B" * 100)

    assert len(name) == 128
    assert name.startswith("#123456 · AAAA")
    assert name.endswith("…")


def test_the_card_escapes_whatever_the_customer_typed() -> None:
    customer = Customer(
        user_id=111,
        full_name="<b>Mallory</b> & Co",
        username="mal_lory",
        language_code="en",
        unreachable=None,
    )
    ticket = a_ticket(
        (
            Answer("category", "Category", "Billing"),
            Answer("description", "What <happened>", "I paid & got <script>alert(1)</script>"),
            Answer("phone", "Phone", ""),
        )
    )

    card = card_text(ticket, customer)

    assert "<b>Ticket #42</b> · 🟢 open" in card
    assert '<a href="tg://user?id=111">&lt;b&gt;Mallory&lt;/b&gt; &amp; Co</a> (@mal_lory)' in card
    assert "Opened: 2025-03-01 12:30 UTC" in card
    assert "<b>What &lt;happened&gt;:</b> I paid &amp; got &lt;script&gt;" in card
    assert "<b>Phone:</b> <i>skipped</i>" in card
    assert "<script>" not in card
    assert "<b>Mallory" not in card


def test_a_closed_tickets_card_says_when_it_closed() -> None:
    customer = Customer(111, "Alice", None, None, None)
    ticket = a_ticket((), closed_at="2025-03-02T08:05:00.000000+00:00")

    card = card_text(ticket, customer)

    assert "🔒 closed" in card
    assert "Closed: 2025-03-02 08:05 UTC" in card
    assert "(@" not in card
    assert "Language:" not in card
