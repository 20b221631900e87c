"""A message as the desk sees it, lifted out of Telegram's types by the handlers."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# What copyMessage can relay faithfully; anything else gets a polite note.
RELAYABLE = frozenset(
    {
        "text",
        "photo",
        "video",
        "document",
        "audio",
        "voice",
        "video_note",
        "sticker",
        "animation",
        "location",
        "venue",
        "contact",
    }
)


@dataclass(frozen=True, slots=True)
class Incoming:
    """One message from a customer or an agent."""

    chat_id: int
    message_id: int
    sender_id: int
    sender_name: str
    sender_username: str | None
    language_code: str | None
    kind: str  # text, photo, ... or the name of an unsupported type
    text: str | None  # text or caption
    date: str  # Telegram's date, ISO 8601 UTC
    media_group_id: str | None = None
    reply_to_message_id: int | None = None  # only explicit replies
    thread_id: int | None = None
    file_size: int | None = None  # bytes, for media

    @property
    def relayable(self) -> bool:
        return self.kind in RELAYABLE

    def to_data(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Incoming:
        return cls(**data)
