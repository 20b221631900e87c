"""How a ticket looks in the agents' group: the topic's name and the ticket card."""

from __future__ import annotations

from html import escape

from storage.db import from_iso
from storage.tickets import Customer, Ticket

TOPIC_NAME_LIMIT = 128


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
    """The ticket card: who, when, and the intake answers, HTML-escaped."""
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
    for answer in ticket.answers:
        value = escape(answer.value) if answer.value else "<i>skipped</i>"
        lines.append(f"<b>{escape(answer.label)}:</b> {value}")
    return "\n".join(lines)


def card_buttons(ticket: Ticket) -> list[list[dict[str, str]]]:
    """The card's inline keyboard, as Bot API JSON."""
    if not ticket.is_open:
        return []
    return [[{"text": "✅ Close ticket", "callback_data": f"ticket:{ticket.id}:close"}]]
