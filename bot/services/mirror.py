"""Edits and reactions, mirrored through the message mapping.

Every relayed message is linked to its copy on the other side (storage.messages). When
its sender edits the original, the copy is edited too: editMessageText for a text,
editMessageCaption for a media caption, with Telegram's entities exactly as they came
(as copyMessage keeps them). When a copy cannot be edited (it is gone, too old, of a kind
that cannot show the change), a marked "✎ edited:" repost of the new text answers it
instead. A reaction on a copy (an agent's on the customer's words in the topic, the
customer's on an agent's reply in private) appears on the original, as the bot's own
reaction.

Both go through the outbox, coalesced per message: a newer edit or reaction drops the
older one still waiting, so three quick edits send one call. An edit is aimed at the copy
when it is sent, since the copy may not exist yet when the edit arrives; an edit that
arrives before its copy went out needs no row at all, as copyMessage copies the message
as it is by then.

Nothing crosses for a ticket that is closed, nor for messages that were never relayed
(form answers, notes, commands, the desk's own messages).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import structlog

from bot.delivery.contract import NotReadyError, ObsoleteError
from bot.telegram_text import utf16_len
from storage import keys, messages, outbox, tickets
from storage.db import Conn
from storage.messages import Direction, RelayedMessage
from storage.outbox import PRIORITY_CARD, PRIORITY_CUSTOMER, OutboxItem, Outgoing, Purpose
from storage.tickets import Ticket

log = structlog.stdlib.get_logger(__name__)

EDITED_MARK = "✎ edited:"
CAPTION_REMOVED = "(the caption was removed)"
# Content whose text an edit can change; a live location's moves arrive as edits too,
# and have nothing to carry.
TEXT_KINDS = frozenset({"text"})
CAPTION_KINDS = frozenset({"photo", "video", "document", "audio", "voice", "animation"})
_EDIT_METHODS = frozenset({"editMessageText", "editMessageCaption"})

_REACTIONS = (
    "👍 👎 ❤ 🔥 🥰 👏 😁 🤔 🤯 😱 🤬 😢 🎉 🤩 🤮 💩 🙏 👌 🕊 🤡 🥱 🥴 😍 🐳 ❤‍🔥 🌚 🌭 💯 🤣 ⚡ 🍌"
    " 🏆 💔 🤨 😐 🍓 🍾 💋 🖕 😈 😴 😭 🤓 👻 👨‍💻 👀 🎃 🙈 😇 😨 🤝 ✍ 🤗 🫡 🎅 🎄 ☃ 💅 🤪 🗿 🆒"
    " 💘 🙉 🦄 😘 💊 🙊 😎 👾 🤷‍♂ 🤷 🤷‍♀ 😡"
)
#: The emoji a bot may react with (the Bot API's ReactionTypeEmoji); Telegram refuses others
#: with REACTION_INVALID, though people's clients may offer newer ones.
REACTION_EMOJI: frozenset[str] = frozenset(_REACTIONS.split())


@dataclass(frozen=True, slots=True)
class Edit:
    """A relayed message's new text or caption, as its sender edited it."""

    chat_id: int
    message_id: int
    editor_id: int | None
    kind: str  # text, photo, ... as the message is now
    text: str | None  # the text or caption; None: a caption removed
    edit_date: int  # Telegram's, in Unix time
    entities: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ReactionChange:
    """One person's reactions on a message, before and after (emoji only: custom emoji
    and paid reactions are left out, a bot can mirror neither)."""

    chat_id: int
    message_id: int
    user_id: int  # the person, or the chat an anonymous admin reacted as
    date: int  # Telegram's, in Unix time
    old: tuple[str, ...]
    new: tuple[str, ...]


async def original_of(
    db: Conn, chat_id: int, message_id: int, direction: Direction
) -> RelayedMessage | None:
    """The relay link of a message relayed in `direction` from this chat, if it was."""
    link = await messages.by_source(db, chat_id, message_id)
    return link if link is not None and link.direction == direction else None


async def copy_of(
    db: Conn, chat_id: int, message_id: int, direction: Direction
) -> RelayedMessage | None:
    """The relay link whose copy, relayed in `direction`, is this message, if it is one."""
    link = await messages.by_target(db, chat_id, message_id)
    return link if link is not None and link.direction == direction else None


async def _open_ticket_of(db: Conn, link: RelayedMessage, what: str) -> Ticket | None:
    ticket = await tickets.get_ticket(db, link.ticket_id)
    if ticket is None or not ticket.is_open:
        # A closed ticket's conversation is over: the other side keeps what it saw.
        log.info("not carried: the ticket is closed", what=what, ticket_id=link.ticket_id)
        return None
    structlog.contextvars.bind_contextvars(ticket_id=ticket.id)
    return ticket


# Edits.


async def carry_edit(db: Conn, link: RelayedMessage, edit: Edit) -> None:
    """Queue the edit of a relayed message to its copy (or a marked repost of it)."""
    if link.sender_id is not None and edit.editor_id != link.sender_id:
        log.warning("an edit by someone other than the sender: not carried", user_id=edit.editor_id)
        return
    if edit.kind not in TEXT_KINDS | CAPTION_KINDS or link.kind not in TEXT_KINDS | CAPTION_KINDS:
        return  # no text to carry (a live location moving, a sticker)
    ticket = await _open_ticket_of(db, link, "edit")
    if ticket is None:
        return
    await messages.set_text(db, link.id, edit.text)
    await messages.supersede(db, link, Purpose.EDIT.value)
    if await messages.unsent_copy(db, link) == ("pending", 0):
        log.info("edited before its copy went out: the copy shows the edit")
        return
    key = keys.edit(edit.chat_id, edit.message_id, edit.edit_date, _version(edit))
    if edit.kind != link.kind:
        # The media changed kind: the copy cannot show it; say what it says now.
        await _repost(db, ticket, link, edit.text, edit.entities, keys.part(key, "repost"))
        return
    params: dict[str, Any]
    if edit.kind in TEXT_KINDS:
        method, params = "editMessageText", {"text": edit.text or "", "entities": edit.entities}
    else:
        method, params = "editMessageCaption", {}
        if edit.text:  # without a caption, editMessageCaption removes it
            params = {"caption": edit.text, "caption_entities": edit.entities}
    await outbox.enqueue(
        db,
        Outgoing(
            key=key,
            purpose=Purpose.EDIT,
            method=method,
            params=params,
            chat_id=_other_side(ticket, link),
            ticket_id=ticket.id,
            message_id=link.id,
            priority=PRIORITY_CUSTOMER,
        ),
    )
    log.info("edit queued for the copy", method=method)


async def aim_edit(db: Conn, item: OutboxItem, params: dict[str, Any]) -> None:
    """Aim an edit row (or its repost) at the copy, which exists by the time it is sent."""
    link = await messages.get_message(db, item.message_id or 0)
    if link is None:
        raise ObsoleteError("the edited message is not known")
    if link.target_message_id is None:
        if await messages.unsent_copy(db, link) is not None:
            raise NotReadyError("the copy of the edited message is not delivered yet")
        raise ObsoleteError("the edited message never reached the other side")
    if item.method in _EDIT_METHODS:
        params["message_id"] = link.target_message_id
    else:
        params["reply_parameters"] = {
            "message_id": link.target_message_id,
            "allow_sending_without_reply": True,
        }


async def edit_failed(db: Conn, item: OutboxItem, why: str) -> bool:
    """The copy could not be edited (gone, too old, a kind that cannot change): repost the
    new text as a marked reply to it instead. False for a repost that failed itself."""
    if item.method not in _EDIT_METHODS or item.ticket_id is None or item.message_id is None:
        return False
    ticket = await tickets.get_ticket(db, item.ticket_id)
    link = await messages.get_message(db, item.message_id)
    if ticket is None or link is None:
        return False
    if item.method == "editMessageText":
        text, entities = item.params.get("text"), item.params.get("entities")
    else:
        text, entities = item.params.get("caption"), item.params.get("caption_entities")
    log.info("the copy could not be edited; reposting the edit", reason=why)
    await _repost(db, ticket, link, text, list(entities or []), keys.part(item.key, "repost"))
    await outbox.mark_sent(db, item.id, None)
    return True


async def _repost(
    db: Conn,
    ticket: Ticket,
    link: RelayedMessage,
    text: str | None,
    entities: list[dict[str, Any]],
    key: str,
) -> None:
    body, shifted = marked(text, entities)
    target = _other_side(ticket, link)
    await outbox.enqueue(
        db,
        Outgoing(
            key=key,
            purpose=Purpose.EDIT,
            method="sendMessage",
            params={"text": body, "entities": shifted},
            chat_id=target,
            ticket_id=ticket.id,
            message_id=link.id,
            priority=PRIORITY_CUSTOMER,
            in_topic=target == ticket.group_chat_id,
        ),
    )


def marked(text: str | None, entities: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """The repost of an edit: the mark in italics, then the new text with its entities."""
    head = f"{EDITED_MARK}\n"
    shift = utf16_len(head)
    mark = {"type": "italic", "offset": 0, "length": utf16_len(EDITED_MARK)}
    if not text:
        return head + CAPTION_REMOVED, [mark]
    moved = [{**entity, "offset": int(entity["offset"]) + shift} for entity in entities]
    return head + text, [mark, *moved]


def _other_side(ticket: Ticket, link: RelayedMessage) -> int:
    """The chat where the copy of a relayed message is."""
    return ticket.group_chat_id if link.direction == "to_agents" else ticket.customer_id


def _version(edit: Edit) -> str:
    content = json.dumps([edit.text, edit.entities], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(content.encode()).hexdigest()[:12]


# Reactions.


def mirrorable(emoji: tuple[str, ...]) -> str | None:
    """The reaction a bot can show for these: the first that Telegram lets a bot set."""
    return next((e for e in emoji if e in REACTION_EMOJI), None)


async def carry_reaction(db: Conn, link: RelayedMessage, change: ReactionChange) -> None:
    """Queue the bot's reaction on the original of a reacted copy: the latest wins, and
    taking a reaction back takes it off."""
    wanted, before = mirrorable(change.new), mirrorable(change.old)
    if wanted == before:
        return  # custom emoji, paid reactions, or emoji a bot cannot set: nothing to show
    ticket = await _open_ticket_of(db, link, "reaction")
    if ticket is None:
        return
    await messages.supersede(db, link, Purpose.REACTION.value)
    reaction = [] if wanted is None else [{"type": "emoji", "emoji": wanted}]
    key = keys.reaction(
        change.chat_id, change.message_id, change.user_id, change.date, wanted or ""
    )
    await outbox.enqueue(
        db,
        Outgoing(
            key=key,
            purpose=Purpose.REACTION,
            method="setMessageReaction",
            params={
                "chat_id": link.source_chat_id,
                "message_id": link.source_message_id,
                "reaction": reaction,
            },
            chat_id=link.source_chat_id,
            ticket_id=ticket.id,
            message_id=link.id,
            # A reaction is no message (the budget does not count it) and can wait for
            # the customers' words.
            priority=PRIORITY_CARD,
        ),
    )
    log.info("reaction mirrored", emoji=wanted or "none")


async def reaction_failed(db: Conn, item: OutboxItem, why: str) -> bool:
    """A reaction Telegram refuses for good (the message is gone, or the group allows only
    some reactions) is given up quietly: a mirrored one or a note's mark is no one's words,
    and not worth a dead letter."""
    what = "a mirrored reaction" if item.message_id is not None else "a note's mark"
    log.info("a reaction could not be set; given up", what=what, reason=why)
    await outbox.mark_sent(db, item.id, None)
    return True
