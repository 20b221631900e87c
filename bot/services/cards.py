"""How a ticket looks in the agents' group: the topic's name and the ticket card.

The card's buttons carry `t:<ticket>:<action>[:<argument>]` (at most 64 bytes, as
Telegram allows); bot.handlers.card reads them back.
"""

from __future__ import annotations

from html import escape

from bot.telegram_text import TEXT_LIMIT
from storage.agents import Agent
from storage.db import from_iso
from storage.ratings import Rating
from storage.tickets import Customer, Priority, Status, Ticket

TOPIC_NAME_LIMIT = 128
# The card is one message, so it can always be edited in place; answers too long for it
# are shortened there and follow in full (see full_answers).
CARD_ROOM = TEXT_LIMIT - 200
SHORTENED = " … (in full below)"
COMMENT_ROOM = 300  # a rating's comment on the card (in full in the topic while it is open)


STATUS_MARK = {
    Status.OPEN: "",
    Status.PENDING: "⏳ ",
    Status.RESOLVED: "✅ ",
    Status.CLOSED: "🔒 ",
}
STATUS_LABEL = {
    Status.OPEN: "🟢 open",
    Status.PENDING: "⏳ pending (waiting on the customer)",
    Status.RESOLVED: "✅ resolved",
    Status.CLOSED: "🔒 closed",
}
PRIORITY_LABEL = {
    Priority.LOW: "low",
    Priority.NORMAL: "normal",
    Priority.HIGH: "🔺 high",
    Priority.URGENT: "🔥 urgent",
}


def topic_name(
    ticket_id: int,
    customer_name: str,
    subject: str,
    status: Status = Status.OPEN,
    assignee: str | None = None,
) -> str:
    """`⏳ #42 · Alice Smith · Billing → Dana`, within Telegram's 128 characters.

    The status mark, the number, the customer and the assignee are kept; the subject
    (then the customer's name) gives way.
    """
    head = f"{STATUS_MARK[status]}#{ticket_id} · {customer_name.strip() or 'Customer'}"
    tail = f" → {assignee.strip()}" if assignee and assignee.strip() else ""
    subject = subject.strip()
    if subject:
        room = TOPIC_NAME_LIMIT - len(head) - len(tail) - len(" · ")
        if room >= 4:
            if len(subject) > room:
                subject = subject[: room - 1].rstrip() + "…"
            head = f"{head} · {subject}"
    name = head + tail
    if len(name) > TOPIC_NAME_LIMIT:
        name = name[: TOPIC_NAME_LIMIT - 1].rstrip() + "…"
    return name


def topic_link(group_chat_id: int, thread_id: int) -> str:
    """A t.me link to a forum topic (works for the group's members)."""
    internal = str(group_chat_id).removeprefix("-100").lstrip("-")
    return f"https://t.me/c/{internal}/{thread_id}"


def _when(iso: str) -> str:
    return from_iso(iso).strftime("%Y-%m-%d %H:%M UTC")


def duration(seconds: float) -> str:
    """A span of time as agents read it: `under a minute`, `12 min`, `3 h 20 min`, `2 d 4 h`."""
    minutes = int(seconds // 60)
    if minutes < 1:
        return "under a minute"
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def _after(start: str, end: str) -> str:
    return duration(max(0.0, (from_iso(end) - from_iso(start)).total_seconds()))


def rating_line(rating: Rating) -> str:
    """`Rating: ⭐⭐⭐⭐ 4/5 · “comment”`, HTML-escaped, the comment shortened."""
    line = f"Rating: {'⭐' * rating.score} {rating.score}/5"
    if rating.comment:
        comment = rating.comment.strip()
        if len(comment) > COMMENT_ROOM:
            comment = comment[: COMMENT_ROOM - 1].rstrip() + "…"
        line += f" · “{escape(comment)}”"
    return line


def card_text(
    ticket: Ticket,
    customer: Customer,
    assignee: Agent | None = None,
    previous: Ticket | None = None,
    rating: Rating | None = None,
) -> str:
    """The ticket card: where it stands, who, when (and how long the first answer and the
    resolution took), the customer's rating, and the intake answers, HTML-escaped; always
    one message."""
    who = f'<a href="tg://user?id={customer.user_id}">{escape(customer.full_name)}</a>'
    if customer.username:
        who += f" (@{escape(customer.username)})"
    lines = [
        f"<b>Ticket #{ticket.id}</b> · {STATUS_LABEL[ticket.status]}",
        f"Priority: {PRIORITY_LABEL[ticket.priority]} · Assignee: "
        + (escape(assignee.full_name) if assignee else "<i>nobody</i>"),
        f"Customer: {who} · id <code>{customer.user_id}</code>",
    ]
    if customer.language_code:
        lines.append(f"Language: {escape(customer.language_code)}")
    lines.append(f"Opened: {_when(ticket.created_at)}")
    if ticket.first_response_at:
        took = _after(ticket.created_at, ticket.first_response_at)
        lines.append(f"First answer: {_when(ticket.first_response_at)} (after {took})")
    resolved = ticket.resolved_at
    if resolved and resolved != ticket.closed_at:
        lines.append(f"Resolved: {_when(resolved)} (after {_after(ticket.created_at, resolved)})")
    if ticket.closed_at:
        # Closed without a resolution first: the closing is the resolution.
        took = ""
        if resolved == ticket.closed_at:
            took = f" (after {_after(ticket.created_at, ticket.closed_at)})"
        lines.append(f"Closed: {_when(ticket.closed_at)}{took}")
    if rating is not None:
        lines.append(rating_line(rating))
    if previous is not None:
        where = f"#{previous.id}"
        if previous.thread_id is not None:
            link = topic_link(previous.group_chat_id, previous.thread_id)
            where = f'<a href="{escape(link)}">#{previous.id}</a>'
        lines.append(f"Follows ticket {where}")
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


Keyboard = list[list[dict[str, str]]]


def button(ticket_id: int, label: str, action: str, argument: str = "") -> dict[str, str]:
    data = f"t:{ticket_id}:{action}" + (f":{argument}" if argument else "")
    return {"text": label, "callback_data": data}


def card_buttons(ticket: Ticket) -> Keyboard:
    """The card's inline keyboard, as Bot API JSON: only what makes sense now."""
    t = ticket.id
    if ticket.status is Status.CLOSED:
        return [[button(t, "↩️ Reopen", "reopen")]]
    if ticket.status is Status.RESOLVED:
        return [[button(t, "↩️ Reopen", "reopen"), button(t, "🔒 Close", "close")]]
    first = [button(t, "👥 Assign…", "menu", "assign")]
    if ticket.assignee_id is None:
        first.insert(0, button(t, "🙋 Take", "take"))
    return [
        first,
        [button(t, f"Priority: {PRIORITY_LABEL[ticket.priority]}", "menu", "priority")],
        [button(t, "✅ Resolve", "resolve"), button(t, "🔒 Close", "close")],
    ]


def priority_menu(ticket: Ticket) -> Keyboard:
    """The card's keyboard while an agent picks a priority."""
    rows = [
        [
            button(
                ticket.id,
                ("• " if priority is ticket.priority else "") + PRIORITY_LABEL[priority],
                "priority",
                priority.value,
            )
        ]
        for priority in Priority
    ]
    return [*rows, [button(ticket.id, "« Back", "back")]]


def assign_menu(ticket: Ticket, agents: list[Agent]) -> Keyboard:
    """The card's keyboard while an agent picks an assignee (agents on duty first)."""
    rows = []
    for agent in agents[:12]:
        mark = "• " if agent.user_id == ticket.assignee_id else ""
        duty = "" if agent.on_duty else " (off duty)"
        rows.append(
            [button(ticket.id, f"{mark}{agent.full_name}{duty}", "assign", str(agent.user_id))]
        )
    if ticket.assignee_id is not None:
        rows.append([button(ticket.id, "Nobody", "assign", "0")])
    return [*rows, [button(ticket.id, "« Back", "back")]]
