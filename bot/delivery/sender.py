"""The sender: drains the outbox into the Bot API, one call in flight per chat.

Each chat's rows go out in order; chats are independent, so one chat that waits
(out of budget, or retrying) never holds back another. A row is marked `sending`
before its call and `sent` with its effects (the topic's id, the copy's message id)
in one transaction after it, so a restart resumes exactly where the last run stopped.

Params keys that start with `_` are instructions to the sender, resolved at send time
from the store, because what they point at may not exist when the row is written:
`_topic` (the ticket's forum topic), `_card` (the ticket's card message), `_reply_to`
(the counterpart of a replied-to message), `_album` (all parts of a media group).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from aiogram import Bot, methods
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.methods.base import TelegramMethod
from pydantic import BaseModel

from storage import messages, outbox, tickets
from storage.db import Conn, Database, from_iso
from storage.outbox import OutboxItem

log = structlog.stdlib.get_logger(__name__)


class NotReadyError(Exception):
    """The row depends on something not delivered yet; try again shortly."""


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """How hard to try before a row becomes a dead letter."""

    max_attempts: int = 8
    base_delay: float = 1.0
    max_delay: float = 300.0

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter, capped."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** max(attempt - 1, 0))
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not crypto


class Sender:
    """Delivers outbox rows; wake() it after a commit that wrote some."""

    def __init__(self, bot: Bot, db: Database, policy: DeliveryPolicy | None = None) -> None:
        self._bot = bot
        self._db = db
        self._policy = policy or DeliveryPolicy()
        self._wake = asyncio.Event()
        self._stopping = False
        self._busy: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.delivered = 0

    def wake(self) -> None:
        """Look at the outbox now."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver until stop() is called."""
        async with self._db.transaction() as db:
            resumed = await outbox.resume_interrupted(db)
        if resumed:
            log.warning("resuming sends interrupted by the last stop", count=resumed)
        while not self._stopping:
            self._wake.clear()
            wait = await self._start_due()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def stop(self, grace: float = 10.0) -> None:
        """Start nothing new and let the calls in flight finish (their rows stay safe)."""
        self._stopping = True
        self._wake.set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _start_due(self) -> float | None:
        """Start the due head of every idle chat; return seconds until the next is due."""
        async with self._db.reader() as db:
            heads = await outbox.heads(db)
        now = datetime.now(UTC)
        wait: float | None = None
        for item in heads:
            if item.chat_id in self._busy:
                continue
            due_in = (from_iso(item.not_before) - now).total_seconds()
            if due_in > 0:
                wait = due_in if wait is None else min(wait, due_in)
                continue
            self._busy.add(item.chat_id)
            task = asyncio.create_task(self._deliver(item))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return wait

    async def _deliver(self, item: OutboxItem) -> None:
        try:
            with structlog.contextvars.bound_contextvars(
                outbox_id=item.id, chat_id=item.chat_id, ticket_id=item.ticket_id
            ):
                await self._attempt(item)
        except Exception:
            log.exception("sender failed on an outbox row; it stays queued", outbox_id=item.id)
        finally:
            self._busy.discard(item.chat_id)
            self._wake.set()

    async def _attempt(self, item: OutboxItem) -> None:
        async with self._db.transaction() as db:
            await outbox.mark_sending(db, item.id)
            try:
                request, parts = await self._prepare(db, item)
            except NotReadyError as exc:
                await outbox.retry_later(db, item.id, 1.0, str(exc))
                return
        attempt = item.attempts + 1
        chat_id = int(getattr(request, "chat_id", item.chat_id))
        try:
            result = await self._bot(request)
        except TelegramRetryAfter as exc:
            await self._retry(item, exc.retry_after, exc)
        except (TelegramServerError, TelegramNetworkError, ClientDecodeError, TimeoutError) as exc:
            if attempt >= self._policy.max_attempts:
                await self._give_up(item, exc)
            else:
                await self._retry(item, self._policy.backoff(attempt), exc)
        except TelegramBadRequest as exc:
            if "message is not modified" in exc.message:
                await self._succeeded(item, chat_id, parts, None)
            else:
                await self._give_up(item, exc)
        except (TelegramForbiddenError, TelegramAPIError) as exc:
            await self._give_up(item, exc)
        else:
            await self._succeeded(item, chat_id, parts, result)

    async def _prepare(
        self, db: Conn, item: OutboxItem
    ) -> tuple[TelegramMethod[Any], list[messages.RelayedMessage]]:
        """Turn a row into a Bot API request, resolving what it refers to."""
        params = {key: value for key, value in item.params.items() if not key.startswith("_")}
        params.setdefault("chat_id", item.chat_id)
        parts: list[messages.RelayedMessage] = []
        if item.params.get("_topic") or item.params.get("_card") or item.purpose == "topic":
            ticket = await tickets.get_ticket(db, item.ticket_id or 0)
            if ticket is None:
                raise NotReadyError(f"ticket {item.ticket_id} is missing")
            params["chat_id"] = ticket.group_chat_id
            if item.params.get("_topic"):
                if ticket.thread_id is None:
                    raise NotReadyError("the ticket's topic is not created yet")
                params["message_thread_id"] = ticket.thread_id
            if item.params.get("_card"):
                if ticket.card_message_id is None:
                    raise NotReadyError("the ticket's card is not posted yet")
                params["message_id"] = ticket.card_message_id
        reply_to = item.params.get("_reply_to")
        if reply_to:
            other = await messages.counterpart(db, int(item.params["from_chat_id"]), int(reply_to))
            if other is not None and other[0] == params["chat_id"]:
                params["reply_parameters"] = {
                    "message_id": other[1],
                    "allow_sending_without_reply": True,
                }
        album = item.params.get("_album")
        if album:
            parts = await messages.album_parts(db, int(item.params["from_chat_id"]), str(album))
            params["message_ids"] = [part.source_message_id for part in parts]
        return _request(item.method, params), parts

    async def _succeeded(
        self,
        item: OutboxItem,
        chat_id: int,
        parts: list[messages.RelayedMessage],
        result: Any,
    ) -> None:
        async with self._db.transaction() as db:
            if item.purpose == "topic":
                await tickets.set_topic(db, item.ticket_id or 0, chat_id, result.message_thread_id)
            elif item.purpose == "card":
                await tickets.set_card(db, item.ticket_id or 0, result.message_id)
            elif item.purpose == "relay" and item.message_id is not None:
                await messages.mark_delivered(db, item.message_id, chat_id, result.message_id)
            elif item.purpose == "album":
                for part, copy in zip(parts, result or [], strict=False):
                    await messages.mark_delivered(db, part.id, chat_id, copy.message_id)
            await outbox.mark_sent(db, item.id, _dump(result))
        self.delivered += 1
        log.debug("delivered", method=item.method, purpose=item.purpose)

    async def _retry(self, item: OutboxItem, delay: float, exc: BaseException) -> None:
        async with self._db.transaction() as db:
            await outbox.retry_later(db, item.id, delay, _describe(exc))
        log.warning(
            "send failed, will retry",
            method=item.method,
            delay=round(delay, 2),
            error=_describe(exc),
        )

    async def _give_up(self, item: OutboxItem, exc: BaseException) -> None:
        async with self._db.transaction() as db:
            await outbox.mark_dead(db, item.id, _describe(exc))
        log.error("send failed for good", method=item.method, error=_describe(exc))


def _request(method: str, params: dict[str, Any]) -> TelegramMethod[Any]:
    cls = getattr(methods, method[0].upper() + method[1:], None)
    if cls is None:
        raise ValueError(f"unknown Bot API method {method!r}")
    request: TelegramMethod[Any] = cls.model_validate(params)
    return request


def _dump(result: Any) -> Any:
    if isinstance(result, BaseModel):
        return result.model_dump(mode="json", exclude_none=True)
    if isinstance(result, list):
        return [_dump(item) for item in result]
    return result


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TelegramAPIError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"
