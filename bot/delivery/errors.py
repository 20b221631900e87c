"""What a failed Bot API call means for the row that made it.

Retry only what can succeed later (429, 5xx, the network); a 400 or a 403 never
becomes right by itself, so it goes to the dead-letter queue or to a recovery.
`reason()` words any failure for storing or showing, without secrets.
"""

from __future__ import annotations

import enum

from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)

from storage.redact import safe_text


class Failure(enum.Enum):
    RATE_LIMITED = "rate_limited"  # 429: wait retry_after, then again
    TRANSIENT = "transient"  # 5xx, network, timeout: back off, then again
    NOT_MODIFIED = "not_modified"  # an edit that changes nothing: done
    UNREACHABLE = "unreachable"  # the customer blocked the bot or is gone
    TOPIC_GONE = "topic_gone"  # the topic was deleted: create a new one
    TOPIC_CLOSED = "topic_closed"  # the topic was closed: reopen it
    BAD_MARKUP = "bad_markup"  # can't parse entities: send as plain text
    MIGRATED = "migrated"  # the group became a supergroup with a new id
    PERMANENT = "permanent"  # anything else that will not succeed later


def classify(exc: BaseException) -> Failure:
    """The kind of failure an exception from a Bot API call is."""
    if isinstance(exc, TelegramRetryAfter):
        return Failure.RATE_LIMITED
    if isinstance(exc, TelegramMigrateToChat):
        return Failure.MIGRATED
    # TelegramEntityTooLarge is a TelegramNetworkError but will never pass.
    if isinstance(exc, TelegramNetworkError) and "too large" not in exc.message.lower():
        return Failure.TRANSIENT
    if isinstance(exc, TelegramServerError | ClientDecodeError | TimeoutError | OSError):
        return Failure.TRANSIENT
    if not isinstance(exc, TelegramAPIError):
        return Failure.PERMANENT
    text = exc.message.lower()
    if "message is not modified" in text or "topic_not_modified" in text:
        return Failure.NOT_MODIFIED
    if isinstance(exc, TelegramForbiddenError) and (
        "blocked by the user" in text or "user is deactivated" in text
    ):
        return Failure.UNREACHABLE
    if any(
        gone in text for gone in ("message thread not found", "topic_deleted", "topic_id_invalid")
    ):
        return Failure.TOPIC_GONE
    if "topic_closed" in text:
        return Failure.TOPIC_CLOSED
    if "can't parse entities" in text:
        return Failure.BAD_MARKUP
    return Failure.PERMANENT


def reason(exc: BaseException) -> str:
    """Why something failed, as the text we store or show: the one way to word an error.

    Telegram's text without its prefix, or the exception's type and text; on one line,
    at most MAX_TEXT characters, with the bot token, any other registered secret and a
    URL's credentials replaced by [secret]. An aiohttp error can carry the request URL,
    which holds the token: this text goes into the outbox, the dead letters, the
    agents' topic and `topicdesk dlq list`, so it is scrubbed here, once, for all of them.
    """
    if isinstance(exc, TelegramAPIError):
        text = exc.message
        for prefix in ("Telegram server says - ", "Bad Request: ", "Forbidden: ", "Conflict: "):
            text = text.removeprefix(prefix)
    else:
        text = f"{type(exc).__name__}: {exc}".rstrip(": ")
    return safe_text(text)
