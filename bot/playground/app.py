"""The playground's web application: the page, its state, and the visitor's actions.

- `GET /`, `GET /static/{name}`: the page (plain HTML, CSS and JavaScript, shipped inside
  the package and read with importlib.resources);
- `GET /api/state?customer=ID`: everything the page shows, with an ETag, so the page's
  poll of an unchanged state is answered 304 with no body;
- `POST /api/customer/send|press|burst`, `POST /api/agent/send|press`: the actions.

The guard: the page drives the real desk, so only the page may. Every request must name
the playground's own address as its Host (a DNS-rebinding page names its own), and a POST
must carry a JSON body (which no other site can send here without a CORS preflight, which
is never granted) and, when the browser says where it comes from (Origin,
Sec-Fetch-Site), come from the page itself.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from importlib import resources
from typing import Any

from aiohttp import web

from bot.fake_telegram import FakeTelegram
from bot.playground import actions
from bot.playground.view import Wire, snapshot
from bot.sandbox import CUSTOMERS, Sandbox

JSONDict = dict[str, Any]
Action = Callable[[FakeTelegram, Mapping[str, Any]], JSONDict]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: The page's files, by name, with their content types.
STATIC_FILES = {
    "index.html": "text/html",
    "style.css": "text/css",
    "app.js": "text/javascript",
    "icon.svg": "image/svg+xml",
}
#: The most button presses whose answers ("toasts") the page is told about.
NOTICES_KEPT = 5
# Everything from this origin only; never framed by another page.
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
_FETCH_SITES_OF_THE_PAGE = frozenset({"same-origin", "none"})


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"ok": False, "error": message}, status=status)


class Playground:
    """The playground's server side: the sandbox it shows, and what it remembers for the
    page (the wire's latest calls, the button presses whose answers to show)."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.wire = Wire()
        #: host:port names this server answers to; set by `bind` once the port is known.
        self.hosts: frozenset[str] = frozenset()
        self._pressed: deque[tuple[str, int]] = deque(maxlen=NOTICES_KEPT)
        self._static = {
            name: (resources.files("bot.playground").joinpath("static", name).read_bytes(), kind)
            for name, kind in STATIC_FILES.items()
        }

    def bind(self, port: int) -> None:
        """The server listens on 127.0.0.1:`port`: the addresses the page may be loaded from."""
        names = ("127.0.0.1", "localhost")
        hosts = {f"{name}:{port}" for name in names}
        if port == 80:  # browsers leave HTTP's default port out of Host and Origin
            hosts.update(names)
        self.hosts = frozenset(hosts)

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application(middlewares=[self._guard], client_max_size=64 * 1024)
        app.router.add_get("/", self._page)
        app.router.add_get("/static/{name}", self._file)
        app.router.add_get("/api/state", self._state)
        routes: dict[str, Action] = {
            "/api/customer/send": actions.customer_sends,
            "/api/customer/press": self._remember_press(actions.customer_presses),
            "/api/customer/burst": actions.customer_bursts,
            "/api/agent/send": actions.agent_sends,
            "/api/agent/press": self._remember_press(actions.agent_presses),
        }
        for path, action in routes.items():
            app.router.add_post(path, self._action(action))
        app.on_response_prepare.append(self._secure)
        return app

    # ------------------------------------------------------------------------- the guard

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.host not in self.hosts:
            return _error(403, f"this playground answers only at {' or '.join(sorted(self.hosts))}")
        if request.method not in {"GET", "HEAD"}:
            origin = request.headers.get("Origin")
            if origin is not None and origin not in {f"http://{host}" for host in self.hosts}:
                return _error(403, "actions are accepted from the playground's own page only")
            site = request.headers.get("Sec-Fetch-Site")
            if site is not None and site not in _FETCH_SITES_OF_THE_PAGE:
                return _error(403, "actions are accepted from the playground's own page only")
            if request.content_type != "application/json":
                return _error(415, "actions take a JSON body (Content-Type: application/json)")
        return await handler(request)

    @staticmethod
    async def _secure(_request: web.Request, response: web.StreamResponse) -> None:
        for name, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)

    # ------------------------------------------------------------------------- the page

    async def _page(self, _request: web.Request) -> web.Response:
        return self._static_response("index.html")

    async def _file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self._static:
            raise web.HTTPNotFound
        return self._static_response(name)

    def _static_response(self, name: str) -> web.Response:
        body, kind = self._static[name]
        return web.Response(body=body, content_type=kind, charset="utf-8")

    # ------------------------------------------------------------------------- the state

    async def _state(self, request: web.Request) -> web.Response:
        wanted = request.query.get("customer", str(CUSTOMERS[0].user_id))
        try:
            customer = actions.customer({"customer": int(wanted)})
        except (ValueError, actions.ActionError):
            return _error(400, f"unknown customer {wanted!r}")
        state = await snapshot(self.sandbox, self.wire, customer.user_id, self._notices())
        body = json.dumps(state, ensure_ascii=False, separators=(",", ":")).encode()
        etag = f'"{hashlib.blake2b(body, digest_size=12).hexdigest()}"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(
            body=body, content_type="application/json", charset="utf-8", headers={"ETag": etag}
        )

    def _notices(self) -> list[JSONDict]:
        """The answers ("toasts") to the latest presses made here, once the desk gave them."""
        answers = self.sandbox.telegram.callback_answers
        notices = []
        for query_id, user_id in self._pressed:
            text = (answers.get(query_id) or {}).get("text")
            if text:
                notices.append({"id": query_id, "user": user_id, "text": str(text)})
        return notices

    # ------------------------------------------------------------------------- the actions

    def _remember_press(self, action: Action) -> Action:
        def pressed(telegram: FakeTelegram, body: Mapping[str, Any]) -> JSONDict:
            answer = action(telegram, body)
            user = body.get("customer", body.get("agent"))
            self._pressed.append((str(answer["query_id"]), int(user or 0)))
            return answer

        return pressed

    def _action(self, action: Action) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            try:
                body = await request.json()
            except ValueError:
                return _error(400, "the body is not valid JSON")
            if not isinstance(body, dict):
                return _error(400, "the body must be a JSON object")
            try:
                answer = action(self.sandbox.telegram, body)
            except actions.ActionError as exc:
                return _error(400, str(exc))
            return web.json_response(answer)

        return handle
