"""Every idempotency key of the outbox, built in one place.

A key names the change that caused a row, so the same change can never enqueue twice
(a redelivered update, a retried reconciliation, two processes). Whoever writes a row
and whoever later asks about it (the housekeeper looking for the sender's note on a dead
letter) build its key here, so they cannot drift apart.
"""

from __future__ import annotations


def ticket_topic(ticket_id: int) -> str:
    return f"ticket:{ticket_id}:topic"


def ticket_card(ticket_id: int) -> str:
    return f"ticket:{ticket_id}:card"


def card_answers(card_key: str) -> str:
    """The answers in full that follow a card which had to shorten them."""
    return part(card_key, "answers")


def ticket_created(ticket_id: int) -> str:
    return f"ticket:{ticket_id}:created"


def ticket_closed(ticket_id: int, closed_at: str | None, part: str) -> str:
    """One of the rows closing a ticket causes: `card`, `customer` or `topic`."""
    return f"ticket:{ticket_id}:closed:{closed_at}:{part}"


def ticket_change(ticket_id: int, event_id: int, part: str) -> str:
    """A row caused by change `event_id` of a ticket's history: its `card`, `topic` name,
    a note to the `customer`, the topic's `close` or `reopen`, an `announce`ment."""
    return f"ticket:{ticket_id}:change:{event_id}:{part}"


def csat(ticket_id: int, cause: str, part: str) -> str:
    """A row of a ticket's rating: `cause` is the button press or the comment's message
    that caused it; `part` the prompt's edit, the comment prompt, the card, the note."""
    return f"ticket:{ticket_id}:csat:{cause}:{part}"


def first_response(ticket_id: int) -> str:
    """The card showing when the first answer reached the customer (it happens once)."""
    return f"ticket:{ticket_id}:answered"


def card_menu(ticket_id: int, query_id: str) -> str:
    """The card's keyboard switched to a menu (assign, priority) by a button press."""
    return f"ticket:{ticket_id}:menu:{query_id}"


def card_pin(ticket_id: int, card_outbox_id: int) -> str:
    return f"ticket:{ticket_id}:pin:{card_outbox_id}"


def replacement(ticket_id: int, cause: str) -> str:
    """The prefix of the rows that replace a deleted topic (`cause` tells the occasion)."""
    return f"ticket:{ticket_id}:again:{cause}"


def topic_reopen(ticket_id: int, outbox_id: int, attempt: int) -> str:
    return f"ticket:{ticket_id}:reopen:{outbox_id}:{attempt}"


def topic_probe(ticket_id: int, thread_id: int, stamp: int) -> str:
    """Reconciliation's probe of a ticket's topic, once per pass (`stamp`)."""
    return f"ticket:{ticket_id}:probe:{thread_id}:{stamp}"


def relay(chat_id: int, message_id: int) -> str:
    return f"relay:{chat_id}:{message_id}"


def album(chat_id: int, media_group_id: str) -> str:
    return f"album:{chat_id}:{media_group_id}"


def reply_to(kind: str, chat_id: int, message_id: int) -> str:
    """A row answering an incoming message: `kind` says which handler (start, msg, agent…)."""
    return f"{kind}:{chat_id}:{message_id}"


def outsider_in_group(chat_id: int, user_id: int) -> str:
    """The one note telling someone who is not an agent that the group's commands are
    for agents (outside a ticket's topic)."""
    return f"group:{chat_id}:outsider:{user_id}"


def part(key: str, name: str) -> str:
    """One of several rows caused by the same change (a greeting and the first question)."""
    return f"{key}:{name}"


def button(user_id: int, query_id: str) -> str:
    return f"button:{user_id}:{query_id}"


def dead_letter_note(letter_id: int) -> str:
    """The note telling the waiting side that a row became dead letter `letter_id`."""
    return f"dead:{letter_id}:note"


def undelivered_note(outbox_id: int) -> str:
    """Reconciliation's note about a reply that never reached its customer."""
    return f"undelivered:{outbox_id}:note"


def outage_report(trip: int, admin_id: int) -> str:
    return f"outage:{trip}:{admin_id}"


def alert(kind: str, day: str, admin_id: int | None = None) -> str:
    """An alert raised once a day (the kv marker without an admin, each admin's message with)."""
    key = f"alert:{kind}:{day}"
    return key if admin_id is None else f"{key}:{admin_id}"


def quarantined(update_id: int, part: str) -> str:
    """A row passing on a quarantined update: its `copy` and the `note` beside it."""
    return f"quarantine:{update_id}:{part}"


def quarantine_report(error_kind: str, admin_id: int | None = None) -> str:
    """The admins are told once per kind of error (the kv marker without an admin)."""
    key = f"quarantine:reported:{error_kind}"
    return key if admin_id is None else f"{key}:{admin_id}"


def note(chat_id: int, message_id: int, part: str) -> str:
    """A row caused by an agent's internal note (message `message_id`): its `mark`
    (the bot's reaction on it), or a `usage` hint for an empty /note."""
    return f"note:{chat_id}:{message_id}:{part}"


def canned(chat_id: int, message_id: int, part: str) -> str:
    """A row caused by an agent's /canned command (message `message_id`): the `reply`
    to the customer, the `mark` on the command."""
    return f"canned:{chat_id}:{message_id}:{part}"


def edit(chat_id: int, message_id: int, edit_date: int, version: str) -> str:
    """An edit of relayed message `message_id` carried to its copy; `version` (a digest of
    the new text) tells apart two edits Telegram stamped with the same second."""
    return f"edit:{chat_id}:{message_id}:{edit_date}:{version}"


def reaction(chat_id: int, message_id: int, user_id: int, date: int, emoji: str) -> str:
    """A reaction by `user_id` on the relayed copy `message_id`, mirrored on its original
    (`emoji` empty: the reaction was removed)."""
    return f"reaction:{chat_id}:{message_id}:{user_id}:{date}:{emoji or '-'}"


def sla_alert(ticket_id: int, event_id: int, part: str) -> str:
    """A post of an SLA warning or breach (history event `event_id`): in the `topic`,
    in `general`."""
    return f"ticket:{ticket_id}:sla:{event_id}:{part}"


def sla_summary(stamp: str) -> str:
    """The line in General that sums up the SLA alerts not posted one by one."""
    return f"sla:summary:{stamp}"


def out_of_office(ticket_id: int) -> str:
    """The note to a customer whose ticket opened while the desk was closed."""
    return f"ticket:{ticket_id}:away"


def ban_note(user_id: int, banned_at: str) -> str:
    """The one note a banned customer gets for a ban (a later ban notes them again)."""
    return f"ban:{user_id}:{banned_at}:note"
