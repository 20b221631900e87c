"""The demo's transcript: every chat as its side sees it, as messages arrive there.

The lines come from what the embedded Telegram holds (the customers' private chats, the
agents' topics, the bot's edits, reactions and button answers, the 429s it gave), read
every few milliseconds; the story only adds its scene titles, a line of narration here and
there, and the buttons its people press. If the desk fails to relay a message, no line
shows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from bot.demo.ledger import Ledger, Refusal
from bot.fake_telegram import BOT_ID, GROUP_ID, FakeTelegram
from bot.sandbox import Person

# How often the chats are read; the story's own steps read them too, so order is kept.
SCAN_INTERVAL = 0.02
# A run of this many lines or more from one speaker in one chat is shortened.
RUN_SHOWN = 2
LABEL_WIDTH = 20
SNIPPET = 40
# Buttons go at the end of a short message's line, or on a line of their own.
INLINE_BUTTONS = 100

KINDS: Mapping[str, str] = {
    "photo": "📷 photo",
    "video": "🎬 video",
    "document": "📄 file",
    "audio": "🎵 audio",
    "voice": "🎤 voice message",
    "video_note": "📹 video message",
    "animation": "🎞 GIF",
    "sticker": "🏷 sticker",
    "location": "📍 location",
    "venue": "📍 venue",
    "contact": "👤 contact",
    "poll": "📊 poll",
    "dice": "🎲 dice",
}
PLURALS: Mapping[str, str] = {"photo": "photos", "video": "videos", "document": "files"}


class Style:
    """ANSI colours, or none: `Style(False)` leaves every text as it is."""

    BOLD, DIM, ITALIC = "1", "2", "3"
    RED, GREEN, YELLOW, BLUE, MAGENTA, CYAN = "31", "32", "33", "34", "35", "36"

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, *codes: str) -> str:
        if not self.enabled or not codes or not text:
            return text
        return f"\x1b[{';'.join(codes)}m{text}\x1b[0m"


def wants_colour(choice: str, stream: TextIO, environ: Mapping[str, str]) -> bool:
    """--color always/never decide; auto colours a terminal, unless NO_COLOR is set
    (https://no-color.org) or the terminal is dumb."""
    if choice in {"always", "never"}:
        return choice == "always"
    if environ.get("NO_COLOR") or environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty())


@dataclass(frozen=True, slots=True)
class Place:
    """Where a line happened: a customer's private chat or a topic of the agents' group."""

    name: str
    agents_side: bool

    @property
    def label(self) -> str:
        return f"[{self.name} · {'topic' if self.agents_side else 'private'}]"


@dataclass(slots=True)
class _Entry:
    at: float
    place: Place
    who: str  # the speaker, or "" for an event
    role: str  # customer, agent, bot, press, event, desk
    lines: list[str]
    run: tuple[str, str] | None = None  # lines with the same key form a run
    order: int = 0


@dataclass
class Transcript:
    """Writes the chats' lines to `out` as the embedded Telegram receives them."""

    telegram: FakeTelegram
    ledger: Ledger
    customers: Sequence[Person]
    out: TextIO
    style: Style
    _seen: dict[int, int] = field(default_factory=dict)  # chat -> last message id shown
    _edits: dict[tuple[int, int], _Shown] = field(default_factory=dict)
    _reactions: dict[tuple[int, int], tuple[str, ...]] = field(default_factory=dict)
    _refusals_shown: int = 0
    _resends_shown: set[int] = field(default_factory=set)
    _presses: dict[str, tuple[Place, str]] = field(default_factory=dict)
    _answers_shown: set[str] = field(default_factory=set)
    _run: list[_Entry] = field(default_factory=list)  # the run being written
    _held: list[_Entry] = field(default_factory=list)  # its lines not yet written
    _order: itertools.count[int] = field(default_factory=itertools.count)
    _task: asyncio.Task[None] | None = None

    # -- the story's lines -----------------------------------------------------------

    def scene(self, number: int, title: str) -> None:
        """A scene's title, after everything that has arrived so far."""
        self._catch_up()
        rule = "─" * max(4, 72 - len(title))
        self._write("")
        self._write(self.style(f"── {number}. {title} {rule}", Style.BOLD))

    def narrate(self, text: str) -> None:
        """The story's own remark (not something a chat holds)."""
        self._catch_up()
        self._write(self.style(f"   ⋯ {text}", Style.DIM, Style.ITALIC))

    def pressed(
        self, person: Person, chat_id: int, thread_id: int | None, button: str, query_id: str
    ) -> None:
        """Someone pressed a button (a press is no message: nobody else sees it); the bot's
        answer to the press (`query_id`) shows when it comes."""
        self._catch_up()
        place = self.place(chat_id, thread_id)
        self._presses[query_id] = (place, person.first_name)
        self._emit([_Entry(0.0, place, person.first_name, "press", [f"pressed [{button}]"])])
        self._flush_run()

    # -- reading the chats -----------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        """Show what has arrived, and stop following the chats."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._catch_up()

    async def _follow(self) -> None:
        while True:
            self.scan()
            await asyncio.sleep(SCAN_INTERVAL)

    def _catch_up(self) -> None:
        self.scan()
        self._flush_run()

    def scan(self) -> None:
        """Write every line that has arrived since the last scan, in the order it arrived."""
        self.ledger.refresh()
        now = self.telegram.clock()
        entries: list[_Entry] = []
        for chat_id in (*(c.user_id for c in self.customers), GROUP_ID):
            entries.extend(self._new_messages(chat_id, now))
        entries.extend(self._refusals())
        entries.extend(self._button_answers(now))
        entries.extend(self._bot_reactions(now))
        for entry in entries:
            entry.order = next(self._order)
        # At one instant, the desk's own line first: "sent it again" before what it sent.
        entries.sort(key=lambda e: (e.at, e.role != "desk", e.order))
        self._emit(entries)

    def place(self, chat_id: int, thread_id: int | None) -> Place:
        if chat_id > 0:
            user = self.telegram.users.get(chat_id, {})
            return Place(str(user.get("first_name", chat_id)), agents_side=False)
        topic = self.telegram.topics.get(chat_id, {}).get(thread_id or 0)
        if topic is None:
            return Place("General", agents_side=True)
        return Place(_short_topic_name(topic.name), agents_side=True)

    def _new_messages(self, chat_id: int, now: float) -> list[_Entry]:
        messages = self.telegram.chat_messages(chat_id)
        last = self._seen.get(chat_id, 0)
        fresh = [m for m in messages if int(m["message_id"]) > last]
        entries = self._edited(chat_id, messages, now)
        if fresh:
            self._seen[chat_id] = int(fresh[-1]["message_id"])
        for group in _albums(fresh):
            entries.append(self._entry(chat_id, group, now))
            for message in group:
                self._edits[(chat_id, int(message["message_id"]))] = _Shown.of(message)
        return entries

    def _edited(self, chat_id: int, messages: Iterable[dict[str, Any]], now: float) -> list[_Entry]:
        """The bot's messages edited since they were shown (the ticket card, mostly): the
        lines that changed, and the buttons if they did."""
        entries = []
        for message in messages:
            key = (chat_id, int(message["message_id"]))
            shown = _Shown.of(message)
            if key not in self._edits or self._edits[key] == shown:
                continue
            before, self._edits[key] = self._edits[key], shown
            what = "the card" if key in self.telegram.pinned else "its message"
            lines = [line for line in shown.lines if line not in before.lines]
            if shown.buttons != before.buttons:
                buttons = " ".join(f"[{label}]" for label in shown.buttons)
                lines.append(buttons or "(its buttons removed)")
            first, *rest = lines or [_first_line(message)]
            place = self.place(chat_id, message.get("message_thread_id"))
            at = self.ledger.changed_at.get(key, now)
            entries.append(_Entry(at, place, "Bot", "bot", [f"✎ edited {what}: {first}", *rest]))
        return entries

    def _bot_reactions(self, now: float) -> list[_Entry]:
        """The bot's reactions set (or changed) since the last scan, one line each."""
        entries = []
        for key, reactions in list(self.telegram.bot_reactions.items()):
            emoji = tuple(str(r.get("emoji") or r.get("type", "")) for r in reactions)
            if self._reactions.get(key, ()) == emoji:
                continue
            self._reactions[key] = emoji
            try:
                message = self.telegram.message(*key)
            except KeyError:
                continue
            snippet = _snippet(_first_line(message))
            whose = f"{self._author(key)}'s “{snippet}”"
            if emoji:
                text = f"reacted {' '.join(emoji)} to {whose}"
            else:
                text = f"took back its reaction to {whose}"
            place = self.place(key[0], message.get("message_thread_id"))
            at = self.ledger.changed_at.get(key, now)
            entries.append(_Entry(at, place, "Bot", "bot", [text]))
        return entries

    def _entry(self, chat_id: int, group: list[dict[str, Any]], now: float) -> _Entry:
        first = group[0]
        message_id = int(first["message_id"])
        at = self.ledger.arrived_at(chat_id, message_id) or now
        place = self.place(chat_id, first.get("message_thread_id"))
        sender = first.get("from") or {}
        service = _service(first)
        if service is not None:
            return _Entry(at, place, "", "event", [service])
        if sender.get("id") == BOT_ID:
            origin = self.ledger.origin(chat_id, message_id)
            if origin is not None:
                author = self._author(origin)
                composed = (chat_id, message_id) in self.ledger.composed
                what = "canned reply by" if composed else "copy of"
                who, role = f"Bot → {what} {author}", "copy"
            else:
                who, role = "Bot", "bot"
        else:
            who = str(sender.get("first_name", "someone"))
            role = "agent" if chat_id < 0 else "customer"
        lines = _body(group)
        reply = self._reply(chat_id, first)
        if reply:
            lines.append(reply)
        run = (place.label, who) if len(lines) == 1 and role != "event" else None
        return _Entry(at, place, who, role, lines, run)

    def _author(self, key: tuple[int, int]) -> str:
        """Who wrote a message (for a copy of a copy, who wrote the original)."""
        origin = self.ledger.origin(*key)
        if origin is not None:
            return self._author(origin)
        try:
            sender = self.telegram.message(*key).get("from") or {}
        except KeyError:
            return "someone"
        return "Bot" if sender.get("id") == BOT_ID else str(sender.get("first_name", "someone"))

    def _reply(self, chat_id: int, message: dict[str, Any]) -> str:
        """`↪ a reply to Dana's “…”`, unless it only points at its topic's first message."""
        quoted = message.get("reply_to_message")
        if not isinstance(quoted, dict) or "forum_topic_created" in quoted:
            return ""
        author = self._author((chat_id, int(quoted["message_id"])))
        return f"↪ a reply to {author}'s “{_snippet(_first_line(quoted))}”"

    def _refusals(self) -> list[_Entry]:
        entries = []
        refusals = self.ledger.refusals
        for refusal in refusals[self._refusals_shown :]:
            entries.append(
                _Entry(
                    refusal.call.at,
                    self._place_of(refusal),
                    "",
                    "desk",
                    [
                        f"⚠ Telegram answered 429 to {refusal.call.method}: "
                        f"“{refusal.call.response.get('description', '')}”"
                    ],
                )
            )
        self._refusals_shown = len(refusals)
        for index, refusal in enumerate(refusals):
            if refusal.resent is None or index in self._resends_shown:
                continue
            self._resends_shown.add(index)
            entries.append(
                _Entry(
                    refusal.resent.at,
                    self._place_of(refusal),
                    "",
                    "desk",
                    [
                        f"↻ the desk waited {refusal.waited or 0:.1f} s, as asked, and sent "
                        "it again: accepted"
                    ],
                )
            )
        return entries

    def _place_of(self, refusal: Refusal) -> Place:
        chat_id = refusal.chat_id
        if chat_id is None:
            return Place("all chats", agents_side=True)
        thread_id = refusal.thread_id
        message_id = refusal.call.params.get("message_id")
        if thread_id is None and isinstance(message_id, int):
            # An edit names its message, not its topic.
            with contextlib.suppress(KeyError):
                thread_id = self.telegram.message(chat_id, message_id).get("message_thread_id")
        return self.place(chat_id, thread_id)

    def _button_answers(self, now: float) -> list[_Entry]:
        entries = []
        for query_id, answer in self.telegram.callback_answers.items():
            if query_id in self._answers_shown or query_id not in self._presses:
                continue
            self._answers_shown.add(query_id)
            text = answer.get("text")
            if text:
                place, name = self._presses[query_id]
                at = self.ledger.answered_at.get(query_id, now)
                entries.append(_Entry(at, place, "Bot", "bot", [f"(only {name} sees) {text}"]))
        return entries

    # -- writing ---------------------------------------------------------------------

    def _emit(self, entries: Iterable[_Entry]) -> None:
        """Write entries; a long run from one speaker in one chat is shortened to its
        first lines, a count, and its last line."""
        for entry in entries:
            if self._run and entry.run is not None and entry.run == self._run[0].run:
                self._run.append(entry)
                if len(self._run) <= RUN_SHOWN:
                    self._write_entry(entry)
                else:
                    self._held.append(entry)
                continue
            self._flush_run()
            self._write_entry(entry)
            self._run = [entry] if entry.run is not None else []

    def _flush_run(self) -> None:
        held = self._held
        if len(held) > RUN_SHOWN:
            gap = " " * (LABEL_WIDTH + 1)
            more = f"… {len(held) - 1} more like these from {held[0].who}"
            self._write(gap + self.style(more, Style.DIM))
            held = held[-1:]
        for entry in held:
            self._write_entry(entry)
        self._run, self._held = [], []

    def _write_entry(self, entry: _Entry) -> None:
        style = self.style
        side = Style.MAGENTA if entry.place.agents_side else Style.CYAN
        label = style(entry.place.label.ljust(LABEL_WIDTH), side)
        who = {
            "customer": style(entry.who, Style.BOLD, Style.CYAN),
            "agent": style(entry.who, Style.BOLD, Style.MAGENTA),
            "press": style(entry.who, Style.BOLD, side),
            "bot": style(entry.who, Style.GREEN),
            "copy": style(entry.who, Style.GREEN, Style.DIM),
        }.get(entry.role, style(entry.who, Style.BOLD))
        first, *rest = entry.lines or [""]
        if entry.role in {"event", "desk"}:
            colour = Style.YELLOW if entry.role == "desk" else Style.DIM
            self._write(f"{label} {style(first, colour)}")
        elif entry.role == "press":
            self._write(f"{label} {who} {style(first, Style.ITALIC)}")
        else:
            self._write(f"{label} {who}: {first}")
        indent = " " * (LABEL_WIDTH + 3)
        for line in rest:
            shown = style(line, Style.DIM) if line.startswith("↪") else line
            self._write(f"{indent}{shown}")

    def _write(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()


def _short_topic_name(name: str) -> str:
    """`#1 Billing` for the topic `#1 · Alice Martin · Billing` (and for `⏳ #1 · … → Dana`,
    the same topic with its status and assignee shown: the label stays put while they
    change)."""
    number = re.search(r"#\d+", name)
    parts = name.split(" · ")
    if number is None or len(parts) < 3:
        return name
    subject = parts[-1].rsplit(" → ", 1)[0]
    return f"{number.group(0)} {subject}"


def _albums(messages: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Consecutive messages of one album, together."""
    groups: list[list[dict[str, Any]]] = []
    for message in messages:
        album = message.get("media_group_id")
        if groups and album is not None and groups[-1][0].get("media_group_id") == album:
            groups[-1].append(message)
        else:
            groups.append([message])
    return groups


def _kind(message: dict[str, Any]) -> str | None:
    return next((kind for kind in KINDS if kind in message), None)


def _buttons(message: dict[str, Any]) -> list[str]:
    rows = (message.get("reply_markup") or {}).get("inline_keyboard") or []
    return [str(button.get("text", "")) for row in rows for button in row]


@dataclass(frozen=True, slots=True)
class _Shown:
    """A bot's message as the transcript last showed it, to tell what an edit changed."""

    edit_date: object
    lines: tuple[str, ...]
    buttons: tuple[str, ...]

    @classmethod
    def of(cls, message: dict[str, Any]) -> _Shown:
        text = str(message.get("text") or message.get("caption") or "")
        lines = tuple(line for line in text.splitlines() if line.strip())
        return cls(message.get("edit_date"), lines, tuple(_buttons(message)))


def _snippet(text: str) -> str:
    return text if len(text) <= SNIPPET else text[: SNIPPET - 1].rstrip() + "…"


def _first_line(message: dict[str, Any]) -> str:
    text = str(message.get("text") or message.get("caption") or "")
    if not text:
        kind = _kind(message)
        return KINDS[kind] if kind else "…"
    return next((line for line in text.splitlines() if line.strip()), "")


def _body(group: list[dict[str, Any]]) -> list[str]:
    """What a message (or an album) says, as lines: text, or a compact mark for media;
    its buttons at the end."""
    first = group[0]
    caption = next((str(m["caption"]) for m in group if m.get("caption")), "")
    if len(group) > 1:
        kinds = {_kind(m) for m in group}
        kind = kinds.pop() if len(kinds) == 1 else None
        what = PLURALS.get(kind or "", "items")
        lines = [f"🖼 album of {len(group)} {what}" + (f" “{caption}”" if caption else "")]
    elif "text" in first:
        lines = [line for line in str(first["text"]).splitlines() if line.strip()] or [""]
    else:
        kind = _kind(first)
        mark = KINDS[kind] if kind else "(a message)"
        lines = [mark + (f" “{caption}”" if caption else "")]
    buttons = " ".join(f"[{label}]" for label in _buttons(first))
    if buttons and len(lines) == 1 and len(lines[0]) + len(buttons) < INLINE_BUTTONS:
        lines[0] += "   " + buttons
    elif buttons:
        lines.append(buttons)
    return lines


def _service(message: dict[str, Any]) -> str | None:
    """A topic's service message as one line, or None for an ordinary message."""
    who = "Bot" if (message.get("from") or {}).get("id") == BOT_ID else "an admin"
    if "forum_topic_created" in message:
        return f"🆕 {who} created the topic “{message['forum_topic_created'].get('name', '')}”"
    if "forum_topic_closed" in message:
        return f"🔒 {who} closed the topic"
    if "forum_topic_reopened" in message:
        return f"🔓 {who} reopened the topic"
    if "forum_topic_edited" in message:
        return f"✎ {who} renamed the topic “{message['forum_topic_edited'].get('name', '')}”"
    return None
