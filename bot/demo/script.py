"""The demo's story: three customers, two agents, one busy morning at the desk.

The story is a list of scenes (`SCENES`), each an async function of a `Story`, which is how
its people act (a customer writes or presses a button, an agent answers in a topic) and
how it waits for the desk (a message reaching the other side). The agents work the
tickets too: Eli takes Bruno's ticket from its card and leaves a note for the team in its
topic, Dana answers Alice with a canned reply, Eli resolves Bruno's ticket and Bruno rates
it. A later feature adds its scene to the list: stats, SLA warnings.

The story writes what people do; what the desk does shows in the transcript, which reads
the embedded Telegram. Whatever a customer or an agent sends that the desk must carry to
the other side is recorded here (`to_topics`, `to_customers`), and so is what must stay
on its side (`notes`) and what the desk must keep (`ratings`): the summary checks each one
against what arrived and what the database holds.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bot.config import Settings
from bot.demo.ledger import Ledger
from bot.demo.transcript import Transcript
from bot.fake_telegram import GROUP_ID, FakeTelegram
from bot.sandbox import AGENTS, CUSTOMERS, Person, Sandbox
from bot.services import canned, csat
from bot.services.notes import NOTE_MARK
from bot.services.tickets import render
from bot.telegram_text import strip_html

ALICE, BRUNO, CHIARA = CUSTOMERS[:3]
DANA, ELI = AGENTS
#: the customers who write in during the story
CAST: tuple[Person, ...] = (ALICE, BRUNO, CHIARA)

# How long the story waits for the desk to do one thing before it gives up: longer than
# any wait the rate limits can impose at the demo's scale (a 429 asks for at most 6 s).
PATIENCE = 30.0
# The pause between two steps of a scene at speed 1, in seconds: time to read a line.
BEAT = 0.45

# One more message than the group's 20 a window: sent at once, they make the desk (told
# the group takes 21) fill a window to 21, and Telegram refuses that send with a 429,
# whatever the window already held.
LOG_LINES: tuple[str, ...] = tuple(
    f"12:04:{2 * n:02d} E/Sync: upload of note {4711 + n} failed: 413 Payload Too Large"
    for n in range(22)
)

# The desk's canned responses in the demo (the sandbox's config, `[canned]`).
CANNED: dict[str, str] = {
    "refund_timing": (
        "A refund shows on your statement within <b>3 to 5 working days</b> "
        "(ticket #{ticket_id}). — {agent_name}"
    ),
}
NOTE = "// crash is the known 4.2.1 bug, fix ships today"
BRUNOS_RATING = 5
BRUNOS_COMMENT = "Updated to 4.2.2 and it works. Obrigado, Eli!"

JSON = dict[str, Any]


class StoryStalledError(Exception):
    """The desk did not do, in time, what the story was waiting for."""


@dataclass(frozen=True, slots=True)
class Relay:
    """A message the desk must carry to the other side of `customer`'s ticket."""

    chat_id: int
    message_id: int
    customer: Person
    canned: str | None = None  # an agent's /canned command: the canned response's name

    @property
    def source(self) -> tuple[int, int]:
        return (self.chat_id, self.message_id)


@dataclass(frozen=True, slots=True)
class Rating:
    """A rating the customer gave their ticket, which the desk must keep."""

    customer: Person
    ticket: int
    score: int
    comment: str | None


@dataclass
class Pacing:
    """Pauses between the story's steps: BEAT seconds divided by `speed`, none when fast."""

    speed: float = 1.0
    fast: bool = False
    paused: float = 0.0  # seconds spent pausing so far

    async def pause(self, beats: float = 1.0) -> None:
        if self.fast:
            return
        seconds = beats * BEAT / self.speed
        self.paused += seconds
        await asyncio.sleep(seconds)


@dataclass
class Story:
    """The story's people acting on the embedded Telegram, and its waits for the desk."""

    sandbox: Sandbox
    transcript: Transcript
    ledger: Ledger
    pacing: Pacing
    patience: float = PATIENCE
    to_topics: list[Relay] = field(default_factory=list)
    to_customers: list[Relay] = field(default_factory=list)
    notes: list[Relay] = field(default_factory=list)  # must stay in the customer's topic
    ratings: list[Rating] = field(default_factory=list)
    topics: dict[int, int] = field(default_factory=dict)  # customer -> their topic's thread
    tickets: dict[int, int] = field(default_factory=dict)  # customer -> their ticket number

    @property
    def telegram(self) -> FakeTelegram:
        return self.sandbox.telegram

    @property
    def settings(self) -> Settings:
        assert self.sandbox.settings is not None
        return self.sandbox.settings

    async def pause(self, beats: float = 1.0) -> None:
        await self.pacing.pause(beats)

    def narrate(self, text: str) -> None:
        self.transcript.narrate(text)

    async def until(self, done: Callable[[], bool], what: str) -> None:
        """Wait until `done()`, or raise StoryStalledError naming `what` did not happen."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.patience
        while True:
            self.ledger.refresh()
            if done():
                return
            if loop.time() > deadline:
                raise StoryStalledError(f"{what} did not happen within {self.patience:g} s")
            await asyncio.sleep(0.02)

    # -- customers -------------------------------------------------------------------

    def says(
        self,
        customer: Person,
        text: str | None = None,
        *,
        kind: str = "text",
        reply_to: int | None = None,
        album: str | None = None,
        relayed: bool = True,
    ) -> JSON:
        """The customer writes to the bot; `relayed` if the desk must pass it to the topic
        (a form's answers are not: they are on the ticket card)."""
        message = self.telegram.send_private(
            customer.user_id, text, kind=kind, reply_to=reply_to, media_group_id=album
        )
        if relayed:
            self.to_topics.append(Relay(customer.user_id, int(message["message_id"]), customer))
        return message

    def sends_album(self, customer: Person, photos: int, caption: str) -> list[JSON]:
        """The customer sends an album of photos, the caption on the first."""
        album = f"album-{customer.user_id}-{len(self.to_topics)}"
        return [
            self.says(customer, caption if n == 0 else None, kind="photo", album=album)
            for n in range(photos)
        ]

    def _since_they_spoke(self, customer: Person) -> list[JSON]:
        """The bot's messages to the customer since the customer's latest message."""
        messages = self.telegram.chat_messages(customer.user_id)
        theirs = [i for i, m in enumerate(messages) if m["from"]["id"] == customer.user_id]
        later = messages[theirs[-1] + 1 :] if theirs else messages
        return [m for m in later if m["from"]["id"] != customer.user_id]

    async def told(self, customer: Person, text: str) -> JSON:
        """Wait until the bot has said `text` (Telegram HTML, or plain) to the customer,
        since the customer last wrote."""
        plain = strip_html(text)
        found: list[JSON] = []

        def said() -> bool:
            found[:] = [
                m for m in self._since_they_spoke(customer) if plain in str(m.get("text", ""))
            ]
            return bool(found)

        await self.until(said, f"the bot telling {customer.first_name} “{plain[:40]}”")
        return found[-1]

    async def picks(self, customer: Person, button: str) -> None:
        """The customer presses the button labelled `button` on the bot's latest message
        that has one, since the customer last wrote."""
        found: list[JSON] = []

        def offered() -> bool:
            found[:] = [m for m in self._since_they_spoke(customer) if _button(m, button)]
            return bool(found)

        await self.until(offered, f"the bot offering {customer.first_name} [{button}]")
        message = found[-1]
        query = self.telegram.press_button(
            customer.user_id, customer.user_id, int(message["message_id"]), _button(message, button)
        )
        self.transcript.pressed(customer, customer.user_id, None, button, str(query["id"]))

    async def rates(self, customer: Person, score: int, comment: str | None = None) -> None:
        """The customer presses `score` on the rating prompt of their ticket (its buttons
        carry `rate:<ticket>:<score>`), then writes `comment` when asked for one."""
        number = self.tickets[customer.user_id]
        data = csat.button_data(number, score)
        found: list[tuple[JSON, str]] = []

        def offered() -> bool:
            found[:] = [
                (m, label)
                for m in self._since_they_spoke(customer)
                for label in _labels(m)
                if _button(m, label) == data
            ]
            return bool(found)

        await self.until(offered, f"the bot asking {customer.first_name} for a rating")
        message, label = found[-1]
        query = self.telegram.press_button(
            customer.user_id, customer.user_id, int(message["message_id"]), data
        )
        self.transcript.pressed(customer, customer.user_id, None, label, str(query["id"]))
        self.ratings.append(Rating(customer, number, score, comment))
        if comment is None:
            return
        await self.told(customer, self.settings.texts.csat_comment_prompt)
        await self.pause()
        self.says(customer, comment, relayed=False)  # the rating's comment: on the card
        await self.told(customer, self.settings.texts.csat_thanks)

    async def ticket_opens(self, customer: Person) -> int:
        """Wait for the customer's topic and their confirmation; return the ticket number."""
        marker = f" · {customer.name}"

        def topic() -> int | None:
            for thread_id, found in self.telegram.topics.get(GROUP_ID, {}).items():
                if marker in found.name and not found.closed:
                    return thread_id
            return None

        await self.until(lambda: topic() is not None, f"{customer.first_name}'s topic")
        thread_id = topic()
        assert thread_id is not None
        named = re.search(r"#(\d+)", self.telegram.topics[GROUP_ID][thread_id].name)
        if named is None:
            raise StoryStalledError(f"{customer.first_name}'s topic has no ticket number")
        number = int(named.group(1))
        self.topics[customer.user_id] = thread_id
        self.tickets[customer.user_id] = number
        await self.told(customer, render(self.settings.texts.ticket_created, ticket=number))
        return number

    async def reaches_topic(self, customer: Person, message_id: int) -> JSON:
        """Wait until the desk's copy of the customer's message is in their topic."""
        source = (customer.user_id, message_id)
        thread_id = self.topics[customer.user_id]
        return await self._copy_of(
            source, GROUP_ID, thread_id, f"{customer.first_name}'s message reaching the topic"
        )

    # -- agents ----------------------------------------------------------------------

    def answers(
        self, agent: Person, customer: Person, text: str, *, reply_to: int | None = None
    ) -> JSON:
        """The agent writes in the customer's topic; the desk must pass it on."""
        message = self.telegram.send_group(
            agent.user_id, text, thread_id=self.topics[customer.user_id], reply_to=reply_to
        )
        self.to_customers.append(Relay(GROUP_ID, int(message["message_id"]), customer))
        return message

    def notes_down(self, agent: Person, customer: Person, text: str) -> JSON:
        """The agent writes in the customer's topic what must stay there: a note (`text`
        starts with the note prefix). The desk must not pass it on."""
        message = self.telegram.send_group(
            agent.user_id, text, thread_id=self.topics[customer.user_id]
        )
        self.notes.append(Relay(GROUP_ID, int(message["message_id"]), customer))
        return message

    async def marked(self, message_id: int, emoji: str) -> None:
        """Wait until the bot has reacted with `emoji` on a message in the group."""
        key = (GROUP_ID, message_id)

        def reacted() -> bool:
            reactions = self.telegram.bot_reactions.get(key, [])
            return any(r.get("emoji") == emoji for r in reactions)

        await self.until(reacted, f"the bot's {emoji} on message {message_id} in the group")

    def sends_canned(
        self, agent: Person, customer: Person, name: str, *, reply_to: int | None = None
    ) -> JSON:
        """The agent answers with `/canned name` in the customer's topic: the desk must send
        the canned text, filled in, to the customer (a message of its own, not a copy)."""
        message = self.telegram.send_group(
            agent.user_id,
            f"/canned {name}",
            thread_id=self.topics[customer.user_id],
            reply_to=reply_to,
        )
        relay = Relay(GROUP_ID, int(message["message_id"]), customer, canned=name)
        text = canned.fill(
            self.settings.canned[name],
            customer_name=customer.name,
            ticket_id=self.tickets[customer.user_id],
            agent_name=agent.name,
        )
        self.ledger.expect(relay.source, customer.user_id, strip_html(text))
        self.to_customers.append(relay)
        return message

    async def reaches_customer(self, customer: Person, message_id: int) -> JSON:
        """Wait until the desk's copy of an agent's message is in the customer's chat."""
        source = (GROUP_ID, message_id)
        what = f"an agent's answer reaching {customer.first_name}"
        return await self._copy_of(source, customer.user_id, None, what)

    async def announced(self, customer: Person, text: str) -> JSON:
        """Wait until the bot has said `text` (plain) in the customer's topic."""
        thread_id = self.topics[customer.user_id]
        found: list[JSON] = []

        def said() -> bool:
            found[:] = [
                m
                for m in self.telegram.bot_messages(GROUP_ID, thread_id)
                if text in str(m.get("text", ""))
            ]
            return bool(found)

        await self.until(said, f"the bot telling {customer.first_name}'s topic “{text[:40]}”")
        return found[-1]

    async def card_shows(self, customer: Person, text: str) -> None:
        """Wait until the ticket card (pinned in the customer's topic) says `text`."""
        thread_id = self.topics[customer.user_id]

        def shown() -> bool:
            return any(
                text in str(m.get("text", ""))
                for m in self.telegram.bot_messages(GROUP_ID, thread_id)
                if (GROUP_ID, int(m["message_id"])) in self.telegram.pinned
            )

        await self.until(shown, f"the card in {customer.first_name}'s topic showing “{text}”")

    async def topic_named(self, customer: Person, text: str) -> None:
        """Wait until the name of the customer's topic has `text` in it."""
        thread_id = self.topics[customer.user_id]

        def named() -> bool:
            topic = self.telegram.topics.get(GROUP_ID, {}).get(thread_id)
            return topic is not None and text in topic.name

        await self.until(named, f"{customer.first_name}'s topic named “…{text}…”")

    async def presses_card_button(self, agent: Person, customer: Person, word: str) -> None:
        """The agent presses the button of the ticket card in the customer's topic whose
        label has `word` in it ("Close" finds "✅ Close ticket")."""
        thread_id = self.topics[customer.user_id]
        found: list[tuple[JSON, str]] = []

        def card() -> bool:
            found[:] = [
                (m, label)
                for m in self.telegram.bot_messages(GROUP_ID, thread_id)
                for label in _labels(m)
                if word.lower() in label.lower()
            ]
            return bool(found)

        await self.until(card, f"the card in {customer.first_name}'s topic offering “{word}”")
        message, label = found[0]
        query = self.telegram.press_button(
            agent.user_id, GROUP_ID, int(message["message_id"]), _button(message, label)
        )
        self.transcript.pressed(agent, GROUP_ID, thread_id, label, str(query["id"]))

    async def _copy_of(
        self, source: tuple[int, int], chat_id: int, thread_id: int | None, what: str
    ) -> JSON:
        found: list[JSON] = []

        def arrived() -> bool:
            for key in self.ledger.copied_to.get(source, []):
                copy = self.telegram.message(*key)
                if key[0] == chat_id and copy.get("message_thread_id") == thread_id:
                    found.append(copy)
                    return True
            return False

        await self.until(arrived, what)
        return found[0]


def _labels(message: JSON) -> list[str]:
    rows = (message.get("reply_markup") or {}).get("inline_keyboard") or []
    return [str(button.get("text", "")) for row in rows for button in row]


def _button(message: JSON, label: str) -> str:
    """The callback data of the message's button labelled `label`, or ""."""
    rows = (message.get("reply_markup") or {}).get("inline_keyboard") or []
    for row in rows:
        for button in row:
            if button.get("text") == label:
                return str(button.get("callback_data", ""))
    return ""


# -- the scenes ----------------------------------------------------------------------


async def open_ticket(
    story: Story,
    customer: Person,
    first_words: str,
    topic: str,
    description: str,
    *,
    meanwhile: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """A customer writes, fills the intake form (a topic button, then a description, as
    the default form asks) and gets a ticket; `meanwhile` happens before the button."""
    choice, describe = story.settings.intake.questions[:2]
    story.says(customer, first_words)  # kept by the form, passed on once the ticket opens
    await story.told(customer, choice.prompt)
    await story.pause()
    if meanwhile is not None:
        await meanwhile()
    await story.picks(customer, topic)
    await story.told(customer, describe.prompt)
    await story.pause()
    story.says(customer, description, relayed=False)  # an answer: it goes on the card
    await story.ticket_opens(customer)
    await story.pause()


async def alice_writes_in(story: Story) -> None:
    await open_ticket(
        story,
        ALICE,
        "Hi! I was charged twice for my subscription this month.",
        "Billing",
        "Two charges of €12 on 3 May, card ending 4242. Could you refund one of them?",
    )


async def bruno_sends_a_photo_with_his_form(story: Story) -> None:
    async def screenshot() -> None:
        # Before he picks a topic: a photo's caption would answer a text question.
        story.says(BRUNO, "the error I get", kind="photo")
        await story.told(BRUNO, "we'll pass that on")
        await story.pause()

    await open_ticket(
        story,
        BRUNO,
        "Olá! The app closes as soon as I open it.",
        "Technical problem",
        "Since yesterday's update it crashes right after the splash screen.",
        meanwhile=screenshot,
    )


async def chiara_writes_in(story: Story) -> None:
    await open_ticket(
        story,
        CHIARA,
        "Ciao, my notes stopped syncing.",
        "Account",
        "Sync fails on my laptop with an error since Monday evening.",
    )


async def eli_takes_brunos_ticket(story: Story) -> None:
    await story.presses_card_button(ELI, BRUNO, "Take")
    await story.announced(BRUNO, f"Assigned to {ELI.name}")
    await story.card_shows(BRUNO, f"Assignee: {ELI.name}")
    await story.topic_named(BRUNO, f"→ {ELI.name}")
    await story.pause()


async def agents_answer_in_the_topics(story: Story) -> None:
    alices_first = next(r for r in story.to_topics if r.customer == ALICE)
    await story.reaches_topic(ALICE, alices_first.message_id)  # Dana has read it
    dana = story.answers(
        DANA, ALICE, "Hi Alice, I'm Dana. I can see both charges, and I've refunded the second."
    )
    await story.reaches_customer(ALICE, _id(dana))
    await story.pause()
    eli = story.answers(
        ELI, BRUNO, "Thanks for the screenshot, Bruno! Which phone and app version is it?"
    )
    await story.reaches_customer(BRUNO, _id(eli))
    await story.pause()


async def bruno_answers_with_an_album(story: Story) -> None:
    album = story.sends_album(BRUNO, 3, "Pixel 7, app 4.2.1: the three screens before it closes")
    await story.reaches_topic(BRUNO, _id(album[0]))
    await story.pause()


async def eli_leaves_a_note(story: Story) -> None:
    note = story.notes_down(ELI, BRUNO, NOTE)
    await story.marked(_id(note), NOTE_MARK)
    await story.pause()


async def alice_replies_to_dana(story: Story) -> None:
    danas = next(r for r in story.to_customers if r.customer == ALICE)
    in_her_chat = await story.reaches_customer(ALICE, danas.message_id)
    question = story.says(
        ALICE,
        "Thank you! Will the refund show on this month's statement?",
        reply_to=_id(in_her_chat),
    )
    in_topic = await story.reaches_topic(ALICE, _id(question))
    await story.pause()
    answer = story.sends_canned(DANA, ALICE, "refund_timing", reply_to=_id(in_topic))
    await story.reaches_customer(ALICE, _id(answer))
    await story.pause()


async def chiara_pastes_her_log(story: Story) -> None:
    limits, believed = story.telegram.limits, story.settings.delivery.group_per_window
    if limits is not None:
        window = 60 / limits.time_scale
        story.narrate(
            f"Telegram takes {limits.group_per_minute} messages per {window:g} s in a group; "
            f"this desk was told {believed}, so a burst meets Telegram's own 429."
        )
    for line in LOG_LINES:
        story.says(CHIARA, line)
    lines = story.to_topics[-len(LOG_LINES) :]
    await story.until(
        lambda: bool(story.ledger.refusals) or all(_copied(story, r) for r in lines),
        "the log reaching the topic",
    )
    await story.pause()


async def private_chats_are_not_held_back(story: Story) -> None:
    answer = story.answers(ELI, BRUNO, "Found it: version 4.2.2 fixes that crash, out today.")
    await story.reaches_customer(BRUNO, _id(answer))
    waiting = [r for r in story.ledger.unresolved() if r.chat_id == GROUP_ID]
    if waiting:
        story.narrate(
            "Bruno's private chat got its answer while the group still waits out its 429."
        )
    await story.pause()


async def dana_closes_alices_ticket(story: Story) -> None:
    await story.presses_card_button(DANA, ALICE, "Close")
    number = story.tickets[ALICE.user_id]
    await story.told(ALICE, render(story.settings.texts.ticket_closed, ticket=number))
    await story.pause()


async def eli_resolves_brunos_ticket(story: Story) -> None:
    await story.presses_card_button(ELI, BRUNO, "Resolve")
    number = story.tickets[BRUNO.user_id]
    await story.told(BRUNO, render(story.settings.texts.ticket_resolved, ticket=number))
    await story.pause()
    await story.rates(BRUNO, BRUNOS_RATING, BRUNOS_COMMENT)
    await story.pause()


async def eli_reads_the_log_and_answers(story: Story) -> None:
    lines = [r for r in story.to_topics if r.customer == CHIARA][-len(LOG_LINES) :]
    await story.until(lambda: all(_copied(story, r) for r in lines), "the whole log in the topic")
    await story.pause()
    answer = story.answers(
        ELI, CHIARA, "Thanks, Chiara: that's our upload limit. I've raised it; try a sync now?"
    )
    await story.reaches_customer(CHIARA, _id(answer))
    await story.pause()
    thanks = story.says(CHIARA, "It works again. Grazie!")
    await story.reaches_topic(CHIARA, _id(thanks))


def _id(message: JSON) -> int:
    return int(message["message_id"])


def _copied(story: Story, relay: Relay) -> bool:
    return any(key[0] == GROUP_ID for key in story.ledger.copied_to.get(relay.source, []))


@dataclass(frozen=True, slots=True)
class Scene:
    """A part of the story: its title, shown in the transcript, and what happens."""

    title: str
    play: Callable[[Story], Awaitable[None]]


SCENES: tuple[Scene, ...] = (
    Scene("Alice writes in", alice_writes_in),
    Scene("Bruno sends a photo while he fills the form", bruno_sends_a_photo_with_his_form),
    Scene("Chiara writes in", chiara_writes_in),
    Scene("Eli takes Bruno's ticket from its card", eli_takes_brunos_ticket),
    Scene("The agents answer in the topics", agents_answer_in_the_topics),
    Scene("Bruno answers with an album", bruno_answers_with_an_album),
    Scene("Eli leaves a note for the team in Bruno's topic", eli_leaves_a_note),
    Scene("Alice replies to Dana, who answers with a canned reply", alice_replies_to_dana),
    Scene("Chiara pastes her error log, a line a message", chiara_pastes_her_log),
    Scene("Meanwhile, Eli answers Bruno", private_chats_are_not_held_back),
    Scene("Dana closes Alice's ticket from its card", dana_closes_alices_ticket),
    Scene("Eli resolves Bruno's ticket, and Bruno rates it", eli_resolves_brunos_ticket),
    Scene("Eli reads Chiara's log and answers", eli_reads_the_log_and_answers),
)
