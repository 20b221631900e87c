"""Before serving: is the token good, the group a forum, the bot allowed to manage topics?

`topicdesk check` prints these checks as a report; `topicdesk run` performs them at
start-up (deleting a webhook, which `check` only reports) and stops with one clear
sentence when something is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ChatMemberStatus, ChatType
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramUnauthorizedError,
)
from aiogram.types import ChatMemberAdministrator, User
from aiogram.utils.token import TokenValidationError

from bot.config import Settings
from bot.delivery.ratelimit import Limits, RateLimiter

log = structlog.stdlib.get_logger(__name__)

# A message about the token, not a token.
TOKEN_REJECTED = (
    "Telegram rejected the bot token: create a new one with @BotFather and set telegram.token"  # noqa: S105
)


class StartupError(Exception):
    """A reason not to start, in one sentence for the person running the daemon."""


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str
    warning: bool = False  # reported, but not a reason to stop


def make_bot(settings: Settings) -> Bot:
    """A Bot talking to the configured Bot API server."""
    api = TelegramAPIServer.from_base(
        settings.telegram.api_url, is_local=settings.telegram.local_api
    )
    session = AiohttpSession(api=api, timeout=settings.telegram.request_timeout)
    try:
        bot = Bot(settings.telegram.token.get_secret_value(), session=session)
    except TokenValidationError:
        raise StartupError(
            "telegram.token is not a bot token (it looks like 123456:ABC-DEF...): "
            "copy it again from @BotFather"
        ) from None
    # Every request passes the rate limiter, whoever makes it.
    bot.session.middleware(RateLimiter(limits_of(settings)))
    return bot


def limits_of(settings: Settings) -> Limits:
    """The rate limiter's budgets from the [delivery] settings."""
    delivery = settings.delivery
    return Limits(
        global_per_second=delivery.global_per_second,
        private_per_second=delivery.private_per_second,
        private_burst=delivery.private_burst,
        group_per_window=delivery.group_per_window,
        group_window=delivery.group_window,
        margin=delivery.margin,
    )


async def identify(bot: Bot, settings: Settings) -> User:
    """getMe: the bot's own account, or StartupError if Telegram refuses the token."""
    try:
        return await bot.get_me()
    except (TelegramUnauthorizedError, TelegramNotFound):
        raise StartupError(TOKEN_REJECTED) from None
    except TelegramNetworkError as exc:
        raise StartupError(
            f"Cannot reach the Bot API at {settings.telegram.api_url} ({exc.message}): "
            "check the network or telegram.api_url"
        ) from None


async def check_group(bot: Bot, settings: Settings, me: User) -> list[Check]:
    """The support group must be a forum where the bot may manage topics."""
    group_id = settings.support.group_id
    try:
        chat = await bot.get_chat(group_id)
    except (TelegramBadRequest, TelegramForbiddenError) as exc:
        return [
            Check(
                "support group",
                False,
                f"the bot cannot open the group {group_id} ({exc.message}): add the bot to "
                "the group and check support.group_id",
            )
        ]
    title = chat.title or str(group_id)
    checks = []
    if chat.type != ChatType.SUPERGROUP or not chat.is_forum:
        checks.append(
            Check(
                "forum",
                False,
                f'the group "{title}" is not a forum: turn on Topics in the group\'s settings',
            )
        )
    else:
        checks.append(Check("forum", True, f'"{title}" is a forum'))
    try:
        member = await bot.get_chat_member(group_id, me.id)
    except TelegramAPIError as exc:
        checks.append(Check("admin rights", False, f"cannot read the bot's rights: {exc.message}"))
        return checks
    if member.status == ChatMemberStatus.CREATOR:
        checks.append(Check("admin rights", True, "the bot owns the group"))
    elif not isinstance(member, ChatMemberAdministrator):
        checks.append(
            Check(
                "admin rights",
                False,
                f'the bot is not an administrator of "{title}": promote it and allow '
                '"Manage topics"',
            )
        )
    elif not member.can_manage_topics:
        checks.append(
            Check(
                "admin rights",
                False,
                f'the bot may not manage topics in "{title}": edit its administrator rights '
                'and turn on "Manage topics"',
            )
        )
    else:
        checks.append(Check("admin rights", True, 'administrator with "Manage topics"'))
    return checks


async def inspect(bot: Bot, settings: Settings) -> list[Check]:
    """Every check, for `topicdesk check`; never raises for a Telegram answer."""
    try:
        me = await identify(bot, settings)
    except StartupError as exc:
        return [Check("bot token", False, str(exc))]
    checks = [Check("bot token", True, f"@{me.username} (id {me.id})")]
    webhook = await bot.get_webhook_info()
    if webhook.url:
        checks.append(
            Check(
                "webhook",
                True,
                f"a webhook is set ({webhook.pending_update_count} updates pending); "
                "`topicdesk run` removes it and keeps the pending updates",
                warning=True,
            )
        )
    else:
        checks.append(
            Check("webhook", True, f"none; {webhook.pending_update_count} updates pending")
        )
    checks.extend(await check_group(bot, settings, me))
    return checks


async def prepare(bot: Bot, settings: Settings) -> User:
    """Start-up: identify, remove a webhook (keeping its updates), verify the group."""
    me = await identify(bot, settings)
    webhook = await bot.get_webhook_info()
    if webhook.url:
        log.warning(
            "removing the webhook so long polling can run; pending updates are kept",
            pending_update_count=webhook.pending_update_count,
        )
        await bot.delete_webhook(drop_pending_updates=False)
    log.info("bot identified", username=me.username, bot_id=me.id)
    for check in await check_group(bot, settings, me):
        if not check.ok:
            raise StartupError(check.detail[0].upper() + check.detail[1:])
    return me
