"""The intake form's rules: which question comes next and whether an answer will do.

Plain data in, plain data out: the handler keeps the form in the FSM and sends what
these functions return.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from bot.config import Question

SKIP = "skip"


@dataclass(frozen=True, slots=True)
class Prompt:
    """A question as the customer sees it: text and buttons (label, callback data)."""

    text: str
    buttons: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class Form:
    """A form in progress, as kept in the FSM data."""

    step: int = 0
    answers: list[list[str]] = field(default_factory=list)  # [question id, label, value]
    started_at: str = ""  # Telegram's date on the message that began the conversation
    kept: list[dict[str, Any]] = field(default_factory=list)  # messages to relay after the card

    def to_data(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "answers": self.answers,
            "started_at": self.started_at,
            "kept": self.kept,
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Form:
        return cls(
            step=int(data.get("step", 0)),
            answers=list(data.get("answers", [])),
            started_at=str(data.get("started_at", "")),
            kept=list(data.get("kept", [])),
        )


def callback_data(step: int, choice: int | str) -> str:
    """Button data for an answer: short, well under Telegram's 64 bytes."""
    return f"form:{step}:{choice}"


def parse_callback(data: str) -> tuple[int, str] | None:
    """The step and choice a form button carries, or None if it is not one of ours."""
    match = re.fullmatch(r"form:(\d+):(\d+|skip)", data)
    return None if match is None else (int(match[1]), match[2])


def prompt_for(question: Question, step: int, skip_label: str, reason: str = "") -> Prompt:
    """What to send to ask `question`, after a one-line `reason` if the last answer failed."""
    text = f"{reason}\n\n{question.prompt}" if reason else question.prompt
    buttons: list[tuple[str, str]] = []
    if question.kind == "choice":
        buttons = [(option, callback_data(step, i)) for i, option in enumerate(question.options)]
    if question.optional:
        buttons.append((skip_label, callback_data(step, SKIP)))
    return Prompt(text=text, buttons=tuple(buttons))


def check_answer(question: Question, text: str | None) -> tuple[str | None, str]:
    """Validate a typed answer: (the value to store, "") or (None, the reason to ask again)."""
    value = (text or "").strip()
    if question.kind == "choice":
        for option in question.options:
            if option.casefold() == value.casefold():
                return option, ""
        return None, "Please choose one of the buttons below."
    if not value:
        return None, "Please answer in text."
    if question.kind == "regex":
        if re.fullmatch(question.pattern, value):
            return value, ""
        return None, question.error or "That doesn't look right; please check it and try again."
    if len(value) < question.min_length:
        return None, f"Please write at least {question.min_length} characters."
    if len(value) > question.max_length:
        return None, f"Please keep it under {question.max_length} characters."
    return value, ""


def check_choice(question: Question, choice: str) -> str | None:
    """The option a button stands for, or None if the button is stale."""
    if choice == SKIP:
        return "" if question.optional else None
    if question.kind != "choice" or not choice.isdigit():
        return None
    index = int(choice)
    return question.options[index] if index < len(question.options) else None
