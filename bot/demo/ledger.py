"""What the embedded Telegram recorded, indexed for the demo: which message in a chat is a
copy of which, when each message arrived, and every 429 with what became of its call.

Everything here is read from the fake's own records (its calls, its updates), never from
what the story meant to happen, so the transcript and the summary show what the desk did.
The one exception is a message the bot composes for a person's command rather than copies
(a canned reply): nothing in Telegram ties it to the command, so the story says which
text it awaits where (`expect`), and the message that has it counts as the command's copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.fake_telegram import Call, FakeTelegram

#: (chat id, message id): a message in the embedded Telegram.
MessageKey = tuple[int, int]

# The calls whose answer names the messages they put into a chat.
_MADE_ONE = frozenset({"sendMessage", "copyMessage", "sendPhoto", "sendDocument"})
# The calls that change a message already in a chat (its text, its buttons, a reaction).
_CHANGED_ONE = frozenset(
    {"editMessageText", "editMessageCaption", "editMessageReplyMarkup", "setMessageReaction"}
)


@dataclass(slots=True)
class Refusal:
    """A call Telegram answered with 429, and the same call accepted later, if it was."""

    call: Call
    retry_after: int
    resent: Call | None = None

    @property
    def chat_id(self) -> int | None:
        return _int(self.call.params.get("chat_id"))

    @property
    def thread_id(self) -> int | None:
        return _int(self.call.params.get("message_thread_id"))

    @property
    def waited(self) -> float | None:
        """Seconds from the 429 to the accepted resend."""
        return None if self.resent is None else self.resent.at - self.call.at


@dataclass
class Ledger:
    """An index over the embedded Telegram's records, brought up to date by refresh()."""

    telegram: FakeTelegram
    #: a copy the bot made -> the message it copied (or the command it answered: `composed`)
    copies: dict[MessageKey, MessageKey] = field(default_factory=dict)
    #: a message -> the copies the bot made of it
    copied_to: dict[MessageKey, list[MessageKey]] = field(default_factory=dict)
    #: the "copies" the bot composed for a command (a canned reply), not copied
    composed: set[MessageKey] = field(default_factory=set)
    #: a message the bot put into a chat -> when the call that put it there arrived
    sent_at: dict[MessageKey, float] = field(default_factory=dict)
    #: a message a person wrote -> when Telegram queued it for the bot
    written_at: dict[MessageKey, float] = field(default_factory=dict)
    #: a message -> when the bot last edited it or reacted on it
    changed_at: dict[MessageKey, float] = field(default_factory=dict)
    #: a button press (its callback query id) -> when the bot answered it
    answered_at: dict[str, float] = field(default_factory=dict)
    refusals: list[Refusal] = field(default_factory=list)
    _expected: list[tuple[MessageKey, int, str]] = field(default_factory=list)
    _calls_read: int = 0
    _updates_read: int = 0

    def refresh(self) -> None:
        """Read the calls and updates recorded since the last refresh."""
        calls = self.telegram.calls
        while self._calls_read < len(calls):
            call = calls[self._calls_read]
            self._calls_read += 1
            if call.method != "getUpdates":  # a long poll is recorded before it is answered
                self._read_call(call)
        sent = self.telegram.updates_sent
        while self._updates_read < len(sent):
            self._read_update(sent[self._updates_read])
            self._updates_read += 1
        for update in self.telegram.pending_updates:
            self._read_update(update)

    def expect(self, command: MessageKey, chat_id: int, text: str) -> None:
        """The bot is to answer `command` by sending `text` (plain, as Telegram shows it) to
        `chat_id`: the first such message it sends there from now on counts as its copy."""
        self._expected.append((command, chat_id, text))

    def origin(self, chat_id: int, message_id: int) -> MessageKey | None:
        """The message that (chat_id, message_id) is the bot's copy of, if it is one."""
        return self.copies.get((chat_id, message_id))

    def arrived_at(self, chat_id: int, message_id: int) -> float | None:
        """When the message came into its chat, on the embedded Telegram's clock."""
        key = (chat_id, message_id)
        return self.sent_at.get(key, self.written_at.get(key))

    def unresolved(self) -> list[Refusal]:
        """429s whose call has not been accepted since."""
        return [refusal for refusal in self.refusals if refusal.resent is None]

    def _read_call(self, call: Call) -> None:
        if call.status == 429:
            retry_after = (call.response.get("parameters") or {}).get("retry_after", 0)
            self.refusals.append(Refusal(call, int(retry_after)))
            return
        if call.status != 200:
            return
        for refusal in self.unresolved():
            # The same call, accepted at last (after one 429 or several).
            if refusal.call.method == call.method and refusal.call.params == call.params:
                refusal.resent = call
        if call.method == "answerCallbackQuery":
            self.answered_at[str(call.params.get("callback_query_id"))] = call.at
            return
        chat_id = _int(call.params.get("chat_id"))
        result: Any = call.response.get("result")
        if chat_id is None:
            return
        if call.method in _CHANGED_ONE:
            message_id = _int(call.params.get("message_id"))
            if message_id is not None:
                self.changed_at[(chat_id, message_id)] = call.at
            return
        if call.method in _MADE_ONE and isinstance(result, dict):
            made = [_int(result.get("message_id"))]
        elif call.method == "copyMessages" and isinstance(result, list):
            made = [_int(item.get("message_id")) for item in result]
        elif call.method == "createForumTopic" and isinstance(result, dict):
            made = [_int(result.get("message_thread_id"))]  # its forum_topic_created message
        else:
            return
        sources = _sources(call) or self._composed_for(call, chat_id, result)
        for index, message_id in enumerate(made):
            if message_id is None:
                continue
            self.sent_at[(chat_id, message_id)] = call.at
            if index < len(sources):
                self.copies[(chat_id, message_id)] = sources[index]
                self.copied_to.setdefault(sources[index], []).append((chat_id, message_id))

    def _composed_for(self, call: Call, chat_id: int, result: Any) -> list[MessageKey]:
        """The command a sendMessage answers, if its text is one the story awaits there."""
        if call.method != "sendMessage" or not isinstance(result, dict):
            return []
        for index, (command, to, text) in enumerate(self._expected):
            if to == chat_id and str(result.get("text", "")).strip() == text.strip():
                del self._expected[index]
                self.composed.add((chat_id, int(result["message_id"])))
                return [command]
        return []

    def _read_update(self, update: dict[str, Any]) -> None:
        message = update.get("message")
        if not isinstance(message, dict):
            return
        key = (int(message["chat"]["id"]), int(message["message_id"]))
        if key not in self.written_at:
            at = self.telegram.enqueued_at.get(int(update["update_id"]))
            if at is not None:
                self.written_at[key] = at


def _sources(call: Call) -> list[MessageKey]:
    """The messages a copy call copied, in order: the n-th copy is of the n-th message (the
    fake leaves out a message that does not exist, and the desk copies only what it saw)."""
    from_chat = _int(call.params.get("from_chat_id"))
    if from_chat is None:
        return []
    if call.method == "copyMessage":
        message_id = _int(call.params.get("message_id"))
        return [] if message_id is None else [(from_chat, message_id)]
    if call.method == "copyMessages":
        ids = call.params.get("message_ids")
        if isinstance(ids, list):
            return [(from_chat, int(i)) for i in ids]
    return []


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return None
    return None
