"""Before serving: is the token good, the group a forum, the bot allowed to manage topics?

`topicdesk check` prints these checks as a report; `topicdesk run` performs them at
start-up (deleting a webhook, which `check` only reports) and stops with one clear
sentence when something is wrong.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

import structlog
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ChatMemberStatus, ChatType
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import ChatMemberAdministrator, User
from aiogram.utils.token import TokenValidationError

from bot.config import BAD_TOKEN_SHAPE, Settings
from bot.delivery.errors import reason
from bot.delivery.ratelimit import Limits, RateLimiter
from storage import redact

log = structlog.stdlib.get_logger(__name__)
T = TypeVar("T")

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
    # Whoever talks to Telegram knows the secrets: every error text is scrubbed of them.
    redact.register(settings.secrets())
    session = AiohttpSession(api=api, timeout=settings.telegram.request_timeout)
    try:
        bot = Bot(settings.telegram.token.get_secret_value(), session=session)
    except TokenValidationError:
        # Settings refuse such a token already; this is for settings made in code.
        raise StartupError(f"telegram.token {BAD_TOKEN_SHAPE}") from None
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


def api_url_shown(settings: Settings) -> str:
    """telegram.api_url as it may be shown: without the credentials it may hold."""
    return redact.scrub(settings.telegram.api_url)


def unusable_api(exc: Exception, settings: Settings, method: str) -> StartupError | None:
    """A failed call that says the Bot API at telegram.api_url is not usable, as a sentence.

    A 404 is the API URL's fault, never the token's (Telegram answers 401 to a wrong
    token): saying "create a new token" would send an operator to revoke a working one.
    """
    where = api_url_shown(settings)
    if isinstance(exc, TelegramNotFound):
        return StartupError(
            f"The Bot API at {where} answered 404 Not Found to {method}: check "
            "telegram.api_url (the token is not the problem)"
        )
    if isinstance(exc, ClientDecodeError):
        return StartupError(
            f"The server at {where} does not answer like a Bot API (its answer to {method} "
            "is not Telegram's JSON): check telegram.api_url"
        )
    if isinstance(exc, TelegramNetworkError):
        return StartupError(
            f"Cannot reach the Bot API at {where} ({reason(exc)}): "
            "check the network or telegram.api_url"
        )
    if isinstance(exc, TelegramServerError):
        return StartupError(
            f"The Bot API at {where} failed to answer {method} ({reason(exc)}): "
            "try again later, or check telegram.api_url"
        )
    return None


async def identify(bot: Bot, settings: Settings) -> User:
    """getMe: the bot's own account, or StartupError if Telegram refuses the token."""
    try:
        return await bot.get_me()
    except TelegramUnauthorizedError:
        raise StartupError(TOKEN_REJECTED) from None
    except (TelegramAPIError, ClientDecodeError) as exc:
        unusable = unusable_api(exc, settings, "getMe")
        if unusable is None:
            unusable = StartupError(
                f"The Bot API at {api_url_shown(settings)} refused getMe ({reason(exc)}): "
                "check telegram.api_url and telegram.token"
            )
        raise unusable from None


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
        # Only a 401 is the token's fault; anything else is the server at api_url.
        return [Check("bot token" if str(exc) == TOKEN_REJECTED else "Bot API", False, str(exc))]
    checks = [Check("bot token", True, f"@{me.username} (id {me.id})")]
    try:
        return checks + await _inspect_further(bot, settings, me)
    except StartupError as exc:
        return [*checks, Check("Bot API", False, str(exc))]


async def _inspect_further(bot: Bot, settings: Settings, me: User) -> list[Check]:
    checks = []
    webhook = await _asking(settings, "getWebhookInfo", bot.get_webhook_info())
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
    checks.extend(await _asking(settings, "getChat", check_group(bot, settings, me)))
    return checks


async def _asking(settings: Settings, method: str, call: Awaitable[T]) -> T:
    """Await a call to Telegram; a failure of the Bot API itself becomes a StartupError."""
    try:
        return await call
    except (TelegramAPIError, ClientDecodeError) as exc:
        unusable = unusable_api(exc, settings, method)
        if unusable is None:
            raise
        raise unusable from None


async def prepare(bot: Bot, settings: Settings) -> User:
    """Start-up: identify, remove a webhook (keeping its updates), verify the group."""
    me = await identify(bot, settings)
    webhook = await _asking(settings, "getWebhookInfo", bot.get_webhook_info())
    if webhook.url:
        log.warning(
            "removing the webhook so long polling can run; pending updates are kept",
            pending_update_count=webhook.pending_update_count,
        )
        await _asking(settings, "deleteWebhook", bot.delete_webhook(drop_pending_updates=False))
    log.info("bot identified", username=me.username, bot_id=me.id)
    for check in await _asking(settings, "getChat", check_group(bot, settings, me)):
        if not check.ok:
            raise StartupError(check.detail[0].upper() + check.detail[1:])
    return me
