"""A large TopicDesk database, and every housekeeping query timed and explained on it.

    python benchmarks/bigdb.py build PATH [--tickets N] [--messages N] [--seed S] [--fast]
    python benchmarks/bigdb.py queries PATH [--runs 5] [--sql]

`build` writes a desk's history through TopicDesk's own storage functions, in time order
over the past `--days` (90): `--customers` (60,000) customers open `--tickets` (100,000)
tickets, one at a time each; all but `--open` (3,000) are closed. The customers and the
agents exchange `--messages` (1,000,000) relayed messages, about half each way, a few as
albums. Each ticket leaves the outbox rows a real run leaves behind, all sent: its topic,
its card and the customer's confirmation; one row per relayed message or album; on
closing, the card edit, the customer's notice and the topic's closing. About one reply to
a customer in a thousand dies (the customer blocked the bot): a dead letter, the sender's
note to the agents, and the reconciliation's flag; some of those letters were dropped by
an admin since. The processed-update ledger holds the last 48 hours of updates (and a few
minutes more, for pruning to find). At the end, as a live desk would have: a few replies
just queued, two rows left 'sending' ten minutes ago, and three replies that died in the
last minutes and that reconciliation has not seen yet.

Times come from a clock the storage functions read instead of the wall clock (their
`utcnow`), set to each event's moment. Events share transactions: `--batch` (1,000
events, about 5,000 rows) per transaction, or 20,000 with `--fast`. The defaults take
about 5 minutes (48 s for a fifth of them) and 1.1 GB: a statement inside a transaction
runs on the event loop's thread, so the cost is SQLite's and Python's, and fewer
transactions (`--fast`) save little. Before storage/db.py ran the writer's statements
inline, each was a round trip to aiosqlite's thread (about 80 µs) and the same build
took 17.5 minutes. `outbox.supersede` is not called on closing: no card edit is ever
left pending here, so it would delete nothing (and as written when this was, it read
the whole outbox).

`queries` brings the schema up to date (as the daemon does at start), then runs the
housekeeper's `tidy()` twice (the second raises the pending-updates alert, with a
stand-in for getWebhookInfo) and `reconcile()`; delivers the group's queue as the sender
would (reconciliation queues no topic probe while the group has rows waiting) and runs
`reconcile()` again; then makes the sender's reads on every wake (`outbox.heads`,
`outbox.depth`, and `unsent_chats`/`lane_head` where the outbox has them). All of it in
one transaction that is rolled back, so the database is left as it was. SQLite's trace
callback collects every statement (see tests/query_plans.py). Each distinct SELECT,
UPDATE and DELETE is then run `--runs` times on its own connection (UPDATE and DELETE
rolled back each time) and explained. Flags: FULL SCAN (a table, or an index that is not
partial, read whole; on outbox and messages in particular) and SLOW (a median over 50 ms).

Run from the repository root.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import math
import os
import random
import sqlite3
import statistics
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NoReturn

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import structlog  # noqa: E402

from bot.config import load_settings  # noqa: E402
from bot.housekeeping import Housekeeper  # noqa: E402
from bot.metrics import Metrics  # noqa: E402
from storage import deadletters, messages, outbox, tickets, updates  # noqa: E402
from storage.db import Database, to_iso  # noqa: E402
from storage.housekeeping import UndeliveredReply, flag_undelivered  # noqa: E402
from storage.migrations import migrate  # noqa: E402
from storage.tickets import Answer  # noqa: E402
from tests.query_plans import (  # noqa: E402
    StatementLog,
    explain,
    full_scans,
    outgoing,
    partial_indexes,
    sender_reads,
)

GROUP = -1001  # the support group: TOPICDESK_SUPPORT__GROUP_ID for `queries`
BOT_ID = 7000000001
AGENTS = [5000 + n for n in range(25)]
LEDGER_WINDOW = timedelta(hours=48, minutes=5)
DEAD_SHARE = 0.001  # of the replies to customers
DROPPED_SHARE = 0.3  # of the dead letters older than a day
ALBUM_SHARE = 0.006  # of the messages that start an album
SLOW_MS = 50.0

PRIORITY_CUSTOMER = getattr(outbox, "PRIORITY_CUSTOMER", 0)
PRIORITY_NOTICE = getattr(outbox, "PRIORITY_NOTICE", 5)
PRIORITY_CARD = getattr(outbox, "PRIORITY_CARD", 9)

OPEN, MESSAGE, ALBUM, CLOSE = 0, 1, 2, 3

FIRST_NAMES = [
    "Alice",
    "Bob",
    "Carla",
    "Dmitri",
    "Elena",
    "Farid",
    "Grace",
    "Hiro",
    "Ines",
    "Jonas",
    "Kira",
    "Luca",
    "Mia",
    "Nadia",
]
LAST_NAMES = [
    "Smith",
    "Müller",
    "Ivanova",
    "García",
    "Rossi",
    "Kowalski",
    "Tanaka",
    "Silva",
    "Dubois",
    "Novak",
    "Berg",
]
LANGUAGES = ["en", "en", "en", "de", "ru", "es", "pt", "uk", "fr", None]
CATEGORIES = ["Billing", "Delivery", "Refund", "Account", "Bug report", "Other"]
WORDS = [
    "order",
    "refund",
    "delivery",
    "package",
    "account",
    "password",
    "invoice",
    "card",
    "payment",
    "tracking",
    "number",
    "please",
    "thanks",
    "hello",
    "still",
    "waiting",
    "yesterday",
    "today",
    "week",
    "address",
    "courier",
    "app",
    "error",
    "screen",
    "login",
    "update",
    "checked",
    "again",
    "sorry",
    "problem",
    "resolved",
    "help",
    "support",
    "store",
    "price",
    "discount",
    "subscription",
    "cancel",
    "renew",
    "charge",
    "twice",
    "receipt",
    "email",
    "phone",
    "code",
    "sent",
]
ERRORS = [
    "Forbidden: bot was blocked by the user",
    "Forbidden: user is deactivated",
    "Bad Request: message to copy not found",
]


# --- the storage functions' clock -----------------------------------------------------


class Clock:
    """What `utcnow()` answers inside the storage functions while building."""

    def __init__(self) -> None:
        self.iso = to_iso(datetime.now(UTC))

    def set(self, moment: float) -> None:
        self.iso = to_iso(datetime.fromtimestamp(moment, UTC))

    def now(self) -> str:
        return self.iso


def use_clock(clock: Clock) -> None:
    """Point every storage module's `utcnow` at `clock`."""
    for name, module in list(sys.modules.items()):
        if (name == "storage" or name.startswith("storage.")) and hasattr(module, "utcnow"):
            module.utcnow = clock.now


# --- the desk's history, planned before it is written ----------------------------------


@dataclasses.dataclass(slots=True)
class Customer:
    user_id: int
    name: str
    username: str | None
    language: str | None
    next_message: int  # message ids of their private chat, ours and theirs


@dataclasses.dataclass(slots=True)
class TicketPlan:
    customer: int  # index into the customers
    start: float
    end: float  # the last message
    close: float  # when an agent closes it, unless it stays open
    stays_open: bool
    messages: int
    id: int = 0  # the ticket's number, once opened


@dataclasses.dataclass
class World:
    now: float
    customers: list[Customer]
    tickets: list[TicketPlan]
    events: list[tuple[float, int, int, int]]  # (time, kind, ticket index, argument)


def plan_world(
    *, tickets_n: int, messages_n: int, customers_n: int, open_n: int, days: float, seed: int
) -> World:
    if messages_n < tickets_n:
        raise SystemExit("--messages must be at least --tickets (a ticket starts with one)")
    rng = random.Random(seed)
    now = time.time()
    first = now - days * 86400
    customers_n = min(customers_n, tickets_n)
    ids = rng.sample(range(100_000_000, 7_000_000_000), customers_n)
    customers = [
        Customer(
            user_id=user_id,
            name=f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}",
            username=f"user{user_id}" if rng.random() < 0.7 else None,
            language=rng.choice(LANGUAGES),
            next_message=rng.randint(1, 400),
        )
        for user_id in ids
    ]
    per_customer = [1] * customers_n
    for _ in range(tickets_n - customers_n):
        per_customer[rng.randrange(customers_n)] += 1

    plans: list[TicketPlan] = []
    last_of_customer: list[int] = []
    for index, count in enumerate(per_customer):
        starts = sorted(rng.uniform(first, now - 1800) for _ in range(count))
        for number, start in enumerate(starts):
            close = start + max(120.0, rng.lognormvariate(math.log(6 * 3600), 1.4))
            if number + 1 < count:  # closed before the customer's next ticket opens
                gap = starts[number + 1] - start
                close = max(min(close, start + gap - 30), start + gap * 0.8)
            stays_open = close >= now - 300
            end = start + (close - start) * rng.uniform(0.6, 0.98)  # the last message
            if stays_open:
                end = max(start + 10, min(end, now - rng.uniform(300, 3600)))
            plans.append(TicketPlan(index, start, end, close, stays_open, messages=1))
        last_of_customer.append(len(plans) - 1)
    open_now = sum(plan.stays_open for plan in plans)
    closed_last = [i for i in last_of_customer if not plans[i].stays_open]
    for i in rng.sample(closed_last, max(0, min(open_n - open_now, len(closed_last)))):
        plans[i].stays_open = True  # an abandoned ticket nobody closed

    weights = [rng.lognormvariate(0, 0.9) for _ in plans]
    total = sum(weights)
    extra = messages_n - tickets_n
    for plan, weight in zip(plans, weights, strict=True):
        plan.messages += int(extra * weight / total)
    for _ in range(messages_n - sum(plan.messages for plan in plans)):
        plans[rng.randrange(len(plans))].messages += 1

    events: list[tuple[float, int, int, int]] = []
    for index, plan in enumerate(plans):
        events.append((plan.start, OPEN, index, 0))
        times = sorted(rng.uniform(plan.start + 5, plan.end) for _ in range(plan.messages - 1))
        times.insert(0, plan.start + 1)  # the message that started it, kept by the form
        part = 0
        while part < len(times):
            to_agents = 1 if part == 0 or rng.random() < 0.55 else 0
            size = 1
            if part > 0 and rng.random() < ALBUM_SHARE:
                size = min(rng.randint(2, 4), len(times) - part)
            if size > 1:
                events.append((times[part], ALBUM, index, size * 2 + to_agents))
            else:
                events.append((times[part], MESSAGE, index, to_agents))
            part += size
        if not plan.stays_open:
            events.append((plan.close, CLOSE, index, 0))
    events.sort()
    return World(now, customers, plans, events)


# --- writing it --------------------------------------------------------------------------


def message_result(message_id: int, chat_id: int, text: str, thread: int | None = None) -> Any:
    """Telegram's answer to sendMessage/editMessageText, as the sender stores it."""
    chat: dict[str, Any] = (
        {"id": chat_id, "title": "Support", "type": "supergroup", "is_forum": True}
        if chat_id < 0
        else {"id": chat_id, "first_name": "Customer", "type": "private"}
    )
    result: dict[str, Any] = {
        "message_id": message_id,
        "date": int(time.time()),
        "chat": chat,
        "from": {"id": BOT_ID, "is_bot": True, "first_name": "TopicDesk", "username": "desk_bot"},
        "text": text,
    }
    if thread is not None:
        result |= {"message_thread_id": thread, "is_topic_message": True}
    return result


class Writer:
    """Turns the planned events into storage calls, one event at a time."""

    def __init__(self, world: World, clock: Clock, seed: int) -> None:
        self.world = world
        self.clock = clock
        self.rng = random.Random(seed + 1)
        self.group_message = 1000
        self.update_id = 400_000_000
        self.ledger_from = world.now - LEDGER_WINDOW.total_seconds()
        self.letters: list[tuple[int, float]] = []  # (dead letter id, when)
        self.texts = [self._sentence() for _ in range(4000)]
        self.albums = 0

    def _sentence(self) -> str:
        words = max(2, int(self.rng.lognormvariate(math.log(14), 0.8)))
        return " ".join(self.rng.choice(WORDS) for _ in range(words)).capitalize() + "."

    def _group_id(self) -> int:
        self.group_message += 1
        return self.group_message

    def _private_id(self, customer: Customer) -> int:
        customer.next_message += 1
        return customer.next_message

    async def _updates(self, db: Any, moment: float, count: int, outcome: str = "handled") -> None:
        for _ in range(count):
            self.update_id += 1
            if moment >= self.ledger_from:
                self.clock.set(moment)
                await updates.record(db, self.update_id, outcome)

    async def event(self, db: Any, moment: float, kind: int, index: int, arg: int) -> None:
        plan = self.world.tickets[index]
        if kind == OPEN:
            await self.open(db, moment, plan)
        elif kind == MESSAGE:
            await self.relay(db, moment, plan, to_agents=bool(arg))
        elif kind == ALBUM:
            await self.album(db, moment, plan, to_agents=bool(arg % 2), parts=arg // 2)
        else:
            await self.close(db, moment, plan)

    async def open(self, db: Any, moment: float, plan: TicketPlan) -> None:
        customer = self.world.customers[plan.customer]
        await self._updates(db, moment - 60, 4)  # the form: the first message, the answers
        self.clock.set(moment)
        await tickets.save_customer(
            db, customer.user_id, customer.name, customer.username, customer.language
        )
        category = self.rng.choice(CATEGORIES)
        answers = [
            Answer("category", "Category", category),
            Answer("order", "Order number", str(self.rng.randint(10**6, 10**7))),
            Answer("details", "What happened", self.rng.choice(self.texts)),
        ]
        ticket = await tickets.open_ticket(
            db, customer.user_id, category, answers, GROUP, to_iso_at(moment - 90)
        )
        plan.id = ticket.id
        name = f"#{ticket.id} · {customer.name} · {category}"
        card = (
            f"<b>Ticket #{ticket.id}</b> · open\n<b>Customer:</b> {customer.name}"
            f" (id {customer.user_id})\n"
            + "\n".join(f"<b>{a.label}:</b> {a.value}" for a in answers)
        )
        confirmation = f"Thank you! Your ticket #{ticket.id} is open; we will answer here."
        topic_row = await outbox.enqueue(
            db,
            outgoing(f"ticket:{ticket.id}:topic", "topic", "createForumTopic", {"name": name},
                     GROUP, ticket.id),
        )  # fmt: skip
        card_row = await outbox.enqueue(
            db,
            outgoing(
                f"ticket:{ticket.id}:card", "card", "sendMessage",
                {"text": card, "parse_mode": "HTML", "reply_markup": {"inline_keyboard": [
                    [{"text": "Close ticket", "callback_data": f"close:{ticket.id}"}]]}},
                GROUP, ticket.id, in_topic=True,
            ),
        )  # fmt: skip
        note_row = await outbox.enqueue(
            db,
            outgoing(
                f"ticket:{ticket.id}:created", "notice", "sendMessage",
                {"chat_id": customer.user_id, "text": confirmation, "parse_mode": "HTML"},
                customer.user_id, ticket.id, priority=PRIORITY_NOTICE,
            ),
        )  # fmt: skip
        self.clock.set(moment + 1.5)  # the sender, a moment later
        thread = self._group_id()
        await tickets.set_topic(db, ticket.id, GROUP, thread)
        result = {"message_thread_id": thread, "name": name, "icon_color": 7322096}
        await outbox.mark_sent(db, topic_row or 0, result)
        card_message = self._group_id()
        await tickets.set_card(db, ticket.id, card_message)
        await outbox.mark_sent(db, card_row or 0, message_result(card_message, GROUP, card, thread))
        private = self._private_id(customer)
        await outbox.mark_sent(
            db, note_row or 0, message_result(private, customer.user_id, confirmation)
        )
        await self._updates(db, moment + 2, 1, "ignored")  # "topic created" in the group

    def _source(self, plan: TicketPlan, to_agents: bool) -> tuple[int, int, int, int]:
        """(source chat, its message id, sender, target chat) of a new message."""
        customer = self.world.customers[plan.customer]
        if to_agents:
            return customer.user_id, self._private_id(customer), customer.user_id, GROUP
        return GROUP, self._group_id(), self.rng.choice(AGENTS), customer.user_id

    def _target_id(self, plan: TicketPlan, to_agents: bool) -> int:
        return (
            self._group_id() if to_agents else self._private_id(self.world.customers[plan.customer])
        )

    def _content(self) -> tuple[str, str | None]:
        roll = self.rng.random()
        if roll < 0.86:
            return "text", self.rng.choice(self.texts)
        if roll < 0.94:
            return "photo", self.rng.choice(self.texts) if self.rng.random() < 0.3 else None
        if roll < 0.98:
            return "document", None
        return "voice", None

    async def relay(self, db: Any, moment: float, plan: TicketPlan, *, to_agents: bool) -> None:
        self.clock.set(moment)
        chat, source, sender, target = self._source(plan, to_agents)
        kind, text = self._content()
        link = await messages.add_message(
            db,
            ticket_id=plan.id,
            direction="to_agents" if to_agents else "to_customer",
            source_chat_id=chat,
            source_message_id=source,
            sender_id=sender,
            kind=kind,
            text=text,
            media_group_id=None,
            sent_at=to_iso_at(moment),
        )
        reply_to = source - self.rng.randint(1, 4) if self.rng.random() < 0.1 else None
        row = await outbox.enqueue(
            db,
            outgoing(
                f"relay:{chat}:{source}", "relay", "copyMessage",
                {"from_chat_id": chat, "message_id": source}, target, plan.id, link,
                in_topic=to_agents, reply_to=reply_to,
            ),
        )  # fmt: skip
        await self._updates(db, moment, 1)
        self.clock.set(moment + 0.8)
        if not to_agents and self.rng.random() < DEAD_SHARE:
            await self.bury(db, moment, plan, row or 0, link or 0, kind, text)
            return
        copy = self._target_id(plan, to_agents)
        await messages.mark_delivered(db, link or 0, target, copy)
        await outbox.mark_sent(db, row or 0, {"message_id": copy})

    async def album(
        self,
        db: Any,
        moment: float,
        plan: TicketPlan,
        *,
        to_agents: bool,
        parts: int,
        dies: bool = False,
        flagged: bool = True,
    ) -> None:
        self.clock.set(moment)
        self.albums += 1
        group_id = str(13_000_000_000_000 + self.albums)
        links = []
        chat = target = 0
        for part in range(parts):
            chat, source, sender, target = self._source(plan, to_agents)
            caption = self.rng.choice(self.texts) if part == 0 and self.rng.random() < 0.4 else None
            links.append(
                await messages.add_message(
                    db,
                    ticket_id=plan.id,
                    direction="to_agents" if to_agents else "to_customer",
                    source_chat_id=chat,
                    source_message_id=source,
                    sender_id=sender,
                    kind="photo",
                    text=caption,
                    media_group_id=group_id,
                    sent_at=to_iso_at(moment),
                )
            )
        row = await outbox.enqueue(
            db,
            outgoing(f"album:{chat}:{group_id}", "album", "copyMessages", {"from_chat_id": chat},
                     target, plan.id, in_topic=to_agents, album=group_id),
        )  # fmt: skip
        await self._updates(db, moment, parts)
        self.clock.set(moment + 2.5)
        if dies:
            await self.bury(
                db, moment, plan, row or 0, links[0] or 0, "photo", None, flagged=flagged
            )
            return
        copies = []
        for link in links:
            copy = self._target_id(plan, to_agents)
            await messages.mark_delivered(db, link or 0, target, copy)
            copies.append({"message_id": copy})
        await outbox.mark_sent(db, row or 0, copies)

    async def bury(
        self,
        db: Any,
        moment: float,
        plan: TicketPlan,
        row: int,
        link: int,
        kind: str,
        text: str | None,
        *,
        noted: bool = True,
        flagged: bool = True,
    ) -> int:
        """A reply that died: dead letter, the sender's note, reconciliation's flag."""
        item = await outbox.get_item(db, row)
        assert item is not None
        error = self.rng.choice(ERRORS)
        letter = await deadletters.bury(db, item, error, 1)
        self.letters.append((letter, moment))
        note = await outbox.enqueue(
            db,
            outgoing(
                f"dead:{letter}:note", "notice", "sendMessage",
                {"text": f"⚠ not delivered to the customer: {error}", "parse_mode": "HTML"},
                GROUP, plan.id, priority=PRIORITY_NOTICE, in_topic=True,
            ),
        )  # fmt: skip
        if noted:
            text_note = f"⚠ not delivered to the customer: {error}"
            await outbox.mark_sent(
                db, note or 0, message_result(self._group_id(), GROUP, text_note)
            )
        else:  # the note died too
            note_item = await outbox.get_item(db, note or 0)
            assert note_item is not None
            await deadletters.bury(db, note_item, "Bad Request: message thread not found", 1)
        if flagged:
            self.clock.set(moment + 120)  # reconciliation's next pass
            reply = UndeliveredReply(link, plan.id, kind, text, row, letter)
            await flag_undelivered(db, reply, told_by="sender")
        return letter

    async def close(self, db: Any, moment: float, plan: TicketPlan) -> None:
        customer = self.world.customers[plan.customer]
        agent = self.rng.choice(AGENTS)
        await self._updates(db, moment, 1)  # the Close button or /close
        self.clock.set(moment)
        await tickets.set_status(db, plan.id, "closed", agent)
        closed_at = self.clock.iso
        event = f"ticket:{plan.id}:closed:{closed_at}"
        card = f"<b>Ticket #{plan.id}</b> · closed\n<b>Customer:</b> {customer.name}"
        farewell = f"Your ticket #{plan.id} is closed. Write again any time."
        rows = [
            await outbox.enqueue(
                db,
                outgoing(
                    f"{event}:card", "card_edit", "editMessageText",
                    {"text": card, "parse_mode": "HTML", "reply_markup": {"inline_keyboard": []}},
                    GROUP, plan.id, priority=PRIORITY_CARD, edits_card=True,
                ),
            ),
            await outbox.enqueue(
                db,
                outgoing(
                    f"{event}:customer", "notice", "sendMessage",
                    {"chat_id": customer.user_id, "text": farewell, "parse_mode": "HTML"},
                    customer.user_id, plan.id, priority=PRIORITY_NOTICE,
                ),
            ),
            await outbox.enqueue(
                db,
                outgoing(f"{event}:topic", "topic_close", "closeForumTopic", {}, GROUP, plan.id,
                         priority=PRIORITY_CARD, in_topic=True),
            ),
        ]  # fmt: skip
        self.clock.set(moment + 2)
        await outbox.mark_sent(db, rows[0] or 0, message_result(self._group_id(), GROUP, card))
        private = self._private_id(customer)
        await outbox.mark_sent(
            db, rows[1] or 0, message_result(private, customer.user_id, farewell)
        )
        await outbox.mark_sent(db, rows[2] or 0, True)
        await self._updates(db, moment + 3, 1, "ignored")  # "topic closed" in the group

    async def live_edge(self, db: Any) -> None:
        """What a live desk has at this moment: work queued, in flight and just failed."""
        now = max(self.world.now, time.time())
        open_plans = [p for p in self.world.tickets if p.stays_open and p.id]
        recent = sorted(open_plans, key=lambda p: p.end)[-12:]
        # Replies queued a few seconds ago (to customers: the group's queue stays empty, so
        # the topic probes of reconciliation are not held back).
        for plan in recent[:5]:
            self.clock.set(now - 5)
            chat, source, sender, target = self._source(plan, to_agents=False)
            link = await messages.add_message(
                db, ticket_id=plan.id, direction="to_customer", source_chat_id=chat,
                source_message_id=source, sender_id=sender, kind="text",
                text=self.rng.choice(self.texts), media_group_id=None, sent_at=to_iso_at(now - 5),
            )  # fmt: skip
            await outbox.enqueue(
                db,
                outgoing(f"relay:{chat}:{source}", "relay", "copyMessage",
                         {"from_chat_id": chat, "message_id": source}, target, plan.id, link),
            )  # fmt: skip
        # Two rows whose send was under way ten minutes ago and never finished.
        for plan in recent[5:7]:
            customer = self.world.customers[plan.customer]
            self.clock.set(now - 600)
            row = await outbox.enqueue(
                db,
                outgoing(f"ticket:{plan.id}:reminder:{int(now)}", "notice", "sendMessage",
                         {"chat_id": customer.user_id, "text": "Are you still there?"},
                         customer.user_id, plan.id, priority=PRIORITY_NOTICE),
            )  # fmt: skip
            await outbox.mark_sending(db, row or 0)
        # Replies that died in the last minutes, not yet seen by reconciliation: one the
        # sender told the agents about, one whose note died too, and an album.
        for number, plan in enumerate(recent[7:10]):
            moment = now - 180 + number * 30
            self.clock.set(moment)
            if number < 2:
                chat, source, sender, target = self._source(plan, to_agents=False)
                link = await messages.add_message(
                    db, ticket_id=plan.id, direction="to_customer", source_chat_id=chat,
                    source_message_id=source, sender_id=sender, kind="text",
                    text="Your refund was approved.", media_group_id=None,
                    sent_at=to_iso_at(moment),
                )  # fmt: skip
                row = await outbox.enqueue(
                    db,
                    outgoing(f"relay:{chat}:{source}", "relay", "copyMessage",
                             {"from_chat_id": chat, "message_id": source}, target, plan.id, link),
                )  # fmt: skip
                await self.bury(
                    db, moment, plan, row or 0, link or 0, "text", "Your refund was approved.",
                    noted=number == 0, flagged=False,
                )  # fmt: skip
            else:
                await self.album(
                    db, moment, plan, to_agents=False, parts=3, dies=True, flagged=False
                )
        # Old dead letters an admin has dropped since.
        cutoff = now - 86400
        for letter_id, moment in self.letters:
            if moment < cutoff and self.rng.random() < DROPPED_SHARE:
                self.clock.set(moment + self.rng.uniform(3600, 86400))
                letter = await deadletters.get_letter(db, letter_id)
                assert letter is not None
                await deadletters.resolve(db, letter, "dropped")


def to_iso_at(moment: float) -> str:
    return to_iso(datetime.fromtimestamp(moment, UTC))


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def build(args: argparse.Namespace, path: Path) -> None:
    started = time.perf_counter()
    world = plan_world(
        tickets_n=args.tickets,
        messages_n=args.messages,
        customers_n=args.customers,
        open_n=args.open,
        days=args.days,
        seed=args.seed,
    )
    print(
        f"planned {len(world.customers):,} customers, {len(world.tickets):,} tickets"
        f" ({sum(p.stays_open for p in world.tickets):,} to stay open), {args.messages:,}"
        f" messages: {len(world.events):,} events in {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    migrate(path)
    clock = Clock()
    use_clock(clock)
    batch = args.batch or (20_000 if args.fast else 1000)
    database = await Database.open(path)
    writer = Writer(world, clock, args.seed)
    written = 0
    began = last = time.perf_counter()
    try:
        for events in chunks(world.events, batch):
            async with database.transaction() as db:
                for moment, kind, index, arg in events:
                    await writer.event(db, moment, kind, index, arg)
            written += len(events)
            if time.perf_counter() - last >= 10 or written == len(world.events):
                last = time.perf_counter()
                rate = written / (last - began)
                left = (len(world.events) - written) / rate
                print(
                    f"  {written:>9,} / {len(world.events):,} events"
                    f"  {last - began:6.0f} s  {rate:7,.0f}/s  about {left:4.0f} s to go",
                    flush=True,
                )
        async with database.transaction() as db:
            await writer.live_edge(db)
    finally:
        await database.close()


def summary(path: Path, seconds: float) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    counts = {
        table: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        for table in (
            "customers", "tickets", "ticket_events", "messages", "outbox", "dead_letters",
            "processed_updates",
        )
    }  # fmt: skip
    opened = conn.execute("SELECT COUNT(*) FROM tickets WHERE status = 'open'").fetchone()[0]
    conn.close()
    print(f"built {path} in {seconds:.0f} s, {path.stat().st_size / 1e6:,.0f} MB")
    print("  " + ", ".join(f"{table} {count:,}" for table, count in counts.items()))
    print(f"  open tickets {opened:,}")


# --- queries -------------------------------------------------------------------------------


class Telegram:
    """getWebhookInfo, the housekeeper's one Bot API call: updates piling up."""

    async def get_webhook_info(self) -> Any:
        return SimpleNamespace(pending_update_count=5000)


class _UndoError(Exception):
    """Rolls the passes' transaction back: the database is left as it was."""


def _undo() -> NoReturn:
    raise _UndoError


async def deliver_the_groups_queue(db: Any) -> None:
    """What the sender does meanwhile: every row for the group goes out."""
    while due := [item for item in await outbox.heads(db) if item.chat_id == GROUP]:
        for item in due:
            await outbox.mark_sent(db, item.id, None)


async def trace(path: Path) -> StatementLog:
    os.environ.setdefault("TOPICDESK_TELEGRAM__TOKEN", "123:abc")
    os.environ.setdefault("TOPICDESK_SUPPORT__GROUP_ID", str(GROUP))
    settings = load_settings()
    database = await Database.open(path)
    log = StatementLog()
    await log.attach(database)
    try:
        with contextlib.suppress(_UndoError):
            async with database.transaction() as db:
                housekeeper = Housekeeper(Telegram(), database, settings, Metrics())
                await housekeeper.tidy()
                await housekeeper.tidy()  # the pending updates are now "sustained": an alert
                await housekeeper.reconcile()  # a note for the agents holds the probes back
                await deliver_the_groups_queue(db)
                await housekeeper.reconcile()  # now the topic probes are queued
                await sender_reads(db, GROUP)
                _undo()
    finally:
        await log.detach()
        await database.close()
    return log


def timed(conn: sqlite3.Connection, sql: str, params: Any, runs: int) -> float:
    """Median milliseconds of `runs` runs; a write is rolled back after each."""
    write = sql.lstrip().split(None, 1)[0].upper() in {"UPDATE", "DELETE"}
    spent = []
    for _ in range(runs):
        if write:
            conn.execute("BEGIN")
        begun = time.perf_counter()
        conn.execute(sql, params).fetchall()
        spent.append((time.perf_counter() - begun) * 1000)
        if write:
            conn.execute("ROLLBACK")
    return statistics.median(spent)


def queries(args: argparse.Namespace) -> None:
    path = Path(args.path)
    if not path.exists():
        raise SystemExit(f"{path} does not exist: build it first")
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(50)
    )  # the housekeeper's findings are expected here
    if not args.no_migrate:
        began = time.perf_counter()
        for migration in migrate(path):
            print(f"applied migration {migration.version:04d}_{migration.name}")
        print(f"schema up to date ({time.perf_counter() - began:.1f} s)")
    log = asyncio.run(trace(path))
    conn = sqlite3.connect(path, isolation_level=None)
    partial = partial_indexes(conn)
    rows = []
    for stmt in log.statements():
        plan = explain(conn, stmt)
        scans = full_scans(plan, stmt.sql, partial)
        ms = timed(conn, stmt.sql, stmt.params, args.runs)
        flags = list(dict.fromkeys(f"FULL SCAN {s.table}" for s in scans))
        if ms > SLOW_MS:
            flags.append("SLOW")
        rows.append((stmt, ms, flags, plan))
    conn.close()
    print_table(rows, show_sql=args.sql)


def print_table(rows: list[tuple[Any, float, list[str], list[str]]], *, show_sql: bool) -> None:
    seen: dict[str, int] = {}
    for stmt, *_ in rows:
        seen[stmt.origin] = seen.get(stmt.origin, 0) + 1
        if seen[stmt.origin] > 1:  # another statement of the same function
            stmt.origin = f"{stmt.origin} #{seen[stmt.origin]}"
    name_w = max(len("query"), *(len(s.origin) for s, *_ in rows))
    via_w = max(len("via"), *(len(s.via) for s, *_ in rows))
    flag_w = max(len("flags"), *(len(", ".join(f)) for _, _, f, _ in rows))
    head = f"{'query':<{name_w}}  {'via':<{via_w}}  calls  {'ms':>8}  {'flags':<{flag_w}}  plan"
    print(head)
    print("-" * (len(head) + 40))
    for stmt, ms, flags, plan in rows:
        lead = f"{stmt.origin:<{name_w}}  {stmt.via:<{via_w}}  {stmt.calls:>5}  {ms:8.2f}  "
        print(f"{lead}{', '.join(flags):<{flag_w}}  {plan[0] if plan else ''}")
        for line in plan[1:]:
            print(" " * (len(lead) + flag_w + 2) + line)
        if show_sql:
            print(" " * len(lead) + "sql: " + " ".join(stmt.sql.split()))
            print(" " * len(lead) + f"params: {stmt.params!r}")
    flagged = [s.origin for s, _, f, _ in rows if f]
    print(f"\n{len(rows)} statements; flagged: {', '.join(flagged) if flagged else 'none'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="write a large database through the storage functions")
    b.add_argument("path")
    b.add_argument("--tickets", type=int, default=100_000)
    b.add_argument("--messages", type=int, default=1_000_000)
    b.add_argument("--customers", type=int, default=60_000)
    b.add_argument("--open", type=int, default=3_000, help="tickets left open (about)")
    b.add_argument("--days", type=float, default=90)
    b.add_argument("--seed", type=int, default=1)
    b.add_argument("--batch", type=int, default=0, help="events per transaction")
    b.add_argument(
        "--fast", action="store_true", help="20,000 events per transaction (--batch 20000)"
    )
    q = sub.add_parser("queries", help="time and explain the housekeeping queries")
    q.add_argument("path")
    q.add_argument("--runs", type=int, default=5)
    q.add_argument("--sql", action="store_true", help="print each statement and its parameters")
    q.add_argument("--no-migrate", action="store_true", help="leave the schema as it is")
    args = parser.parse_args()
    if args.command == "build":
        path = Path(args.path)
        if path.exists():
            raise SystemExit(f"{path} exists; give a new path")
        started = time.perf_counter()
        asyncio.run(build(args, path))
        summary(path, time.perf_counter() - started)
    else:
        queries(args)


if __name__ == "__main__":
    main()
