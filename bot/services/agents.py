"""Who may act as an agent, and as an admin.

Agents are the members of the support group (asked of Telegram with getChatMember and
trusted for `agents.membership_ttl` seconds), or only the ids in `agents.ids` when that
is set. The desk's admins (`support.admin_ids`) are always agents. Bots never are.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import User

from bot.config import Settings
from storage import agents
from storage.db import Conn

log = structlog.stdlib.get_logger(__name__)

MEMBER_STATUSES = frozenset({"creator", "administrator", "member"})
# getChatMember answers in a second or two; a slow Telegram must not hold the update's
# transaction for long (the answer is cached afterwards).
CHECK_TIMEOUT = 5


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did something in the support group, and what they may do."""

    user_id: int | None  # None: an anonymous admin, posting as the group itself
    name: str
    username: str | None
    is_agent: bool
    is_admin: bool
    # False when Telegram could not be asked and nothing was cached: is_agent is then
    # the fallback (a person who could post in the group), never enough for a button.
    checked: bool = True

    @property
    def mention(self) -> str:
        return f"@{self.username}" if self.username else self.name


class AgentDirectory:
    """Answers "is this person an agent?", asking Telegram at most once per ttl."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self._group_id = settings.support.group_id
        self._admins = frozenset(settings.support.admin_ids)
        self._listed = frozenset(settings.agents.ids)
        self._ttl = settings.agents.membership_ttl
        self._clock = clock
        self._members: dict[int, tuple[float, bool]] = {}

    def is_admin(self, user_id: int | None) -> bool:
        return user_id is not None and user_id in self._admins

    def forget(self, user_id: int) -> None:
        """Drop what is known of a user's membership (they joined or left)."""
        self._members.pop(user_id, None)

    async def actor(self, bot: Bot, db: Conn, user: User, *, wrote: bool = False) -> Actor:
        """The person behind an update in the support group.

        `wrote`: they posted a message there, which Telegram allows only to members; if
        Telegram cannot be asked, that is taken as membership (their words are never
        dropped for it), while a button press is refused.
        """
        admin = self.is_admin(user.id)
        username = user.username
        if user.is_bot:
            return Actor(user.id, user.full_name, username, is_agent=False, is_admin=False)
        member: bool | None
        if admin:
            member = True
        elif self._listed:
            member = user.id in self._listed
        else:
            member = await self._is_member(bot, user.id)
        checked = member is not None
        is_agent = member if member is not None else wrote
        if is_agent:
            await agents.remember(db, user.id, user.full_name, username)
        return Actor(user.id, user.full_name, username, is_agent, admin, checked)

    async def _is_member(self, bot: Bot, user_id: int) -> bool | None:
        now = self._clock()
        cached = self._members.get(user_id)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        try:
            member = await bot.get_chat_member(
                self._group_id, user_id, request_timeout=CHECK_TIMEOUT
            )
        except TelegramAPIError as exc:
            log.warning("could not check a group membership", user_id=user_id, error=exc.message)
            return cached[1] if cached is not None else None
        except TimeoutError:
            log.warning("could not check a group membership in time", user_id=user_id)
            return cached[1] if cached is not None else None
        status = str(getattr(member.status, "value", member.status))
        is_member = status in MEMBER_STATUSES or (
            status == "restricted" and bool(getattr(member, "is_member", False))
        )
        self._members[user_id] = (now, is_member)
        return is_member


def anonymous_admin(group_title: str) -> Actor:
    """An admin posting anonymously, as the group: an agent whose name is the group's."""
    return Actor(None, group_title or "Admin", None, is_agent=True, is_admin=False)
