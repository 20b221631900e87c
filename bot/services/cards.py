"""How a ticket looks in the agents' group: the topic's name and the ticket card."""

from __future__ import annotations

from html import escape

from bot.telegram_text import TEXT_LIMIT
from storage.db import from_iso
from storage.tickets import Customer, Ticket

TOPIC_NAME_LIMIT = 128
# The card is one message, so it can always be edited in place; answers too long for it
# are shortened there and follow in full (see full_answers).
CARD_ROOM = TEXT_LIMIT - 200
SHORTENED = " … (in full below)"


def topic_name(ticket_id: int, customer_name: str, subject: str) -> str:
    """`#42 · Alice Smith · Billing`, trimmed to Telegram's 128 characters."""
    parts = [f"#{ticket_id}", customer_name.strip() or "Customer"]
    if subject:
        parts.append(subject.strip())
    name = " · ".join(parts)
    if len(name) > TOPIC_NAME_LIMIT:
        name = name[: TOPIC_NAME_LIMIT - 1].rstrip() + "…"
    return name


def card_text(ticket: Ticket, customer: Customer) -> str:
    """The ticket card: who, when, and the intake answers, HTML-escaped; always one message."""
    opened = from_iso(ticket.created_at).strftime("%Y-%m-%d %H:%M UTC")
    who = f'<a href="tg://user?id={customer.user_id}">{escape(customer.full_name)}</a>'
    if customer.username:
        who += f" (@{escape(customer.username)})"
    status = "🟢 open" if ticket.is_open else "⚪ closed"
    lines = [
        f"<b>Ticket #{ticket.id}</b> · {status}",
        f"Customer: {who} · id <code>{customer.user_id}</code>",
    ]
    if customer.language_code:
        lines.append(f"Language: {escape(customer.language_code)}")
    lines.append(f"Opened: {opened}")
    if ticket.closed_at:
        lines.append(f"Closed: {from_iso(ticket.closed_at).strftime('%Y-%m-%d %H:%M UTC')}")
    lines.append("")
    room = _room_per_answer(ticket, sum(len(line) for line in lines))
    for answer in ticket.answers:
        value = answer.value
        if len(value) > room:
            value = value[: room - len(SHORTENED)].rstrip() + SHORTENED
        shown = escape(value) if value else "<i>skipped</i>"
        lines.append(f"<b>{escape(answer.label)}:</b> {shown}")
    return "\n".join(lines)


def _room_per_answer(ticket: Ticket, header: int) -> int:
    """Characters each answer may take on the card (markup does not count)."""
    labels = sum(len(answer.label) + 3 for answer in ticket.answers)
    total = sum(len(answer.value) for answer in ticket.answers)
    if header + labels + total <= CARD_ROOM:
        return max((len(answer.value) for answer in ticket.answers), default=0)
    return max(len(SHORTENED) + 20, (CARD_ROOM - header - labels) // max(len(ticket.answers), 1))


def full_answers(ticket: Ticket, customer: Customer) -> str | None:
    """The answers in full, when the card had to shorten some; None when it did not."""
    if SHORTENED not in card_text(ticket, customer):
        return None
    lines = [f"<b>Ticket #{ticket.id}: the answers in full</b>", ""]
    for answer in ticket.answers:
        lines.append(f"<b>{escape(answer.label)}:</b> {escape(answer.value)}")
    return "\n".join(lines)


def card_buttons(ticket: Ticket) -> list[list[dict[str, str]]]:
    """The card's inline keyboard, as Bot API JSON."""
    if not ticket.is_open:
        return []
    return [[{"text": "✅ Close ticket", "callback_data": f"ticket:{ticket.id}:close"}]]
