"""The HTTP side of the fake, and ``FakeTelegram``, which puts it all together.

``FakeTelegram`` combines the world, the updates queue, the budgets and the Bot API methods
(mixins over ``FakeState``) behind an aiohttp application that listens on loopback only. It
routes ``/bot<token>/<method>`` (any HTTP method) and ``/file/bot<token>/<path>``, decodes the
parameters (query string, JSON body, or a multipart form with uploads), applies injected
faults, records every call in ``calls`` and answers in Telegram's shapes.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Callable

from aiohttp import web

from bot.fake_telegram.chats import ChatMethods
from bot.fake_telegram.forum import ForumMethods
from bot.fake_telegram.messages import MessageMethods
from bot.fake_telegram.params import decode_form_value
from bot.fake_telegram.records import (
    ADMIN_ID,
    BOT_TOKEN,
    JSON,
    Call,
    Handler,
    Limits,
    TelegramError,
    bad_request,
    type_name,
)
from bot.fake_telegram.world import World

_BAD_GATEWAY_PAGE = (
    "<html>\r\n<head><title>{code} {text}</title></head>\r\n<body>\r\n"
    "<center><h1>{code} {text}</h1></center>\r\n<hr><center>nginx/1.18.0</center>\r\n"
    "</body>\r\n</html>\r\n"
)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class FakeTelegram(World, ChatMethods, MessageMethods, ForumMethods):
    """A fake Bot API server with a small world of users, forum groups, topics and messages."""

    def __init__(
        self,
        token: str = BOT_TOKEN,
        *,
        limits: Limits | None = None,
        clock: Callable[[], float] = time.monotonic,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        """``clock`` stamps calls and sends and drives the budgets; tests of the limits may
        pass a manual one. The server listens on ``host``, a loopback address (127.0.0.0/8,
        ::1) or "localhost", and on ``port`` (0: a free one)."""
        if host.lower() != "localhost" and not _is_loopback(host):
            raise ValueError(
                "the fake Telegram listens on loopback only (127.0.0.0/8, ::1 or localhost), "
                f"not on {host!r}"
            )
        if not 0 <= port <= 65535:
            raise ValueError(f"the port must be 0 (any free one) or 1-65535, not {port}")
        super().__init__(token, limits=limits, clock=clock)
        self.add_user(ADMIN_ID, "Desk", "Admin", username="desk_admin")
        self.host = host
        self.port = port
        self.base_url = ""
        self._runner: web.AppRunner | None = None
        self._methods: dict[str, tuple[str, Handler]] = {}
        for name, handler in self._method_table().items():
            self._methods[name.lower()] = (name, handler)

    # ----------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        self._stopping = False
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_route("GET", "/file/bot{token}/{path:.+}", self._handle_file)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        addresses = self._runner.addresses
        if not all(_is_loopback(str(address[0])) for address in addresses):
            # "localhost" resolved to something else: never serve there.
            await self.stop()
            raise RuntimeError(f"{self.host!r} is not a loopback address here: {addresses}")
        host, port = addresses[0][:2]
        if ":" in host:
            host = f"[{host}]"  # an IPv6 address in a URL
        self.base_url = f"http://{host}:{port}"

    async def stop(self) -> None:
        self._stopping = True
        self._notify()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeTelegram:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ----------------------------------------------------------------------------- HTTP

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        at = self.clock()
        raw_method = request.match_info["method"]
        try:
            params, files = await self._read_params(request)
        except TelegramError as exc:
            return self._answer(raw_method, {}, exc.error_code, exc.body(), at)
        params["_files"] = files
        logged = {k: v for k, v in params.items() if k != "_files"}
        for key, data in files.items():
            logged[key] = {"upload": True, "size": len(data)}

        if request.match_info["token"] != self.token:
            body = {"ok": False, "error_code": 401, "description": "Unauthorized"}
            return self._answer(raw_method, logged, 401, body, at)
        known = self._methods.get(raw_method.lower())
        if known is None:
            body = {"ok": False, "error_code": 404, "description": "Not Found"}
            return self._answer(raw_method, logged, 404, body, at)
        method, handler = known

        fault = self._take_fault(method, params)
        if fault is not None:
            if fault.html:
                page = _BAD_GATEWAY_PAGE.format(code=fault.error_code, text=fault.description)
                record: JSON = {
                    "ok": False,
                    "error_code": fault.error_code,
                    "description": fault.description,
                    "html": page,
                }
                self.calls.append(Call(method, logged, fault.error_code, record, at))
                return web.Response(status=fault.error_code, text=page, content_type="text/html")
            error = TelegramError(fault.error_code, fault.description, fault.parameters or None)
            return self._answer(method, logged, fault.error_code, error.body(), at)

        pending: Call | None = None
        try:
            if method == "getUpdates":
                # A long poll is in ``calls`` from its arrival, with status 0 while it waits.
                pending = Call(method, logged, 0, {}, at)
                self.calls.append(pending)
                result = await self._get_updates(params, request)
            else:
                result = handler(params)
            body = {"ok": True, "result": result}
            status = 200
        except TelegramError as exc:
            body, status = exc.body(), exc.error_code
        return self._answer(method, logged, status, body, at, pending)

    def _answer(
        self,
        method: str,
        params: JSON,
        status: int,
        body: JSON,
        at: float,
        pending: Call | None = None,
    ) -> web.Response:
        text = json.dumps(body, ensure_ascii=False)
        if pending is None:
            self.calls.append(Call(method, params, status, json.loads(text), at))
        else:
            pending.status, pending.response = status, json.loads(text)
        return web.Response(status=status, text=text, content_type="application/json")

    async def _read_params(self, request: web.Request) -> tuple[JSON, dict[str, bytes]]:
        params: JSON = {}
        files: dict[str, bytes] = {}
        for key, value in request.query.items():
            params[key] = decode_form_value(key, value)
        if request.method not in {"POST", "PUT"} or not request.can_read_body:
            return params, files
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except ValueError as exc:
                raise bad_request("can't parse JSON encoded request") from exc
            if not isinstance(body, dict):
                raise bad_request("JSON object expected")
            for key, value in body.items():
                params[key] = decode_form_value(key, value) if isinstance(value, str) else value
            return params, files
        form = await request.post()
        for key, field_value in form.items():
            if isinstance(field_value, web.FileField):
                files[key] = field_value.file.read()
            else:
                params[key] = decode_form_value(key, str(field_value))
        return params, files

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return web.Response(status=401, text="Unauthorized")
        file_id = self._file_paths.get(request.match_info["path"])
        if file_id is None:
            return web.Response(status=404, text="Not Found")
        stored = self._files[file_id]
        data = stored.data if stored.data is not None else bytes(min(stored.file_size, 1 << 20))
        return web.Response(body=data, content_type="application/octet-stream")

    def _method_table(self) -> dict[str, Handler]:
        media = {
            f"send{type_name(kind)}": self._media_sender(kind)
            for kind in (
                "photo",
                "document",
                "video",
                "audio",
                "voice",
                "animation",
                "sticker",
                "video_note",
            )
        }
        return {
            "getMe": lambda _p: self.bot_user,
            "getUpdates": lambda _p: None,  # served asynchronously by _get_updates
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "getChat": self._get_chat,
            "getChatMember": self._get_chat_member,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "answerCallbackQuery": self._answer_callback_query,
            "sendChatAction": self._send_chat_action,
            "sendMessage": self._send_message,
            "copyMessage": self._copy_message,
            "copyMessages": self._copy_messages,
            "sendMediaGroup": self._send_media_group,
            **media,
            "editMessageText": self._edit_message_text,
            "editMessageCaption": self._edit_message_caption,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "deleteMessage": self._delete_message,
            "pinChatMessage": self._pin_chat_message,
            "unpinChatMessage": self._unpin_chat_message,
            "setMessageReaction": self._set_message_reaction,
            "createForumTopic": self._create_forum_topic,
            "editForumTopic": self._edit_forum_topic,
            "closeForumTopic": self._close_forum_topic,
            "reopenForumTopic": self._reopen_forum_topic,
            "deleteForumTopic": self._delete_forum_topic,
            "getFile": self._get_file,
        }
