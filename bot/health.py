"""The health endpoint: `/healthz` for a monitor, `/metrics` for Prometheus.

Served on `health.listen` (off unless set). `/healthz` answers 200 when getUpdates
succeeded within `health.max_poll_age` seconds, the database completes a real write,
and the circuit breaker lets the sender send; otherwise 503 with the reason for each
failing check. `topicdesk check` asks a running daemon through `daemon_health()`.

No aiogram here: the server needs none, and `check` loads it only for its own checks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import structlog
from aiohttp import web
from prometheus_client.exposition import choose_encoder

from bot.config import HealthSettings, Settings
from bot.metrics import Metrics
from storage import housekeeping as store
from storage.db import Database

if TYPE_CHECKING:
    from bot.preflight import Check

log = structlog.stdlib.get_logger(__name__)

# A write that takes longer than this means the database is in trouble (locked, slow disk).
DATABASE_TIMEOUT = 5.0
# How long `topicdesk check` waits for a running daemon's answer.
ASK_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Report:
    """The outcome of the checks: each check's facts, and why the failing ones fail."""

    checks: dict[str, dict[str, Any]]
    reasons: list[str]

    @property
    def ok(self) -> bool:
        return not self.reasons

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": "ok" if self.ok else "failing"}
        if self.reasons:
            body["reasons"] = self.reasons
        body["checks"] = self.checks
        return body


class HealthServer:
    """/healthz and /metrics over HTTP, from start() until stop()."""

    def __init__(
        self,
        settings: HealthSettings,
        database: Database,
        metrics: Metrics,
        *,
        breaker_open: Callable[[], bool] = lambda: False,
    ) -> None:
        self._settings = settings
        self._db = database
        self._metrics = metrics
        self._breaker_open = breaker_open
        self._runner: web.AppRunner | None = None
        self._write: asyncio.Task[None] | None = None
        self._failing: set[str] = set()  # the checks that failed last time
        self.url = ""

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics_page)
        return app

    async def start(self) -> None:
        """Listen on health.listen; raises OSError if the address cannot be had."""
        runner = web.AppRunner(self.application(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self._settings.host, self._settings.port)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self.url = f"http://{self._settings.listen}"
        log.info(
            "health endpoint listening",
            healthz=f"{self.url}/healthz",
            metrics=f"{self.url}/metrics",
        )

    async def stop(self) -> None:
        """Stop answering, and let a health write in flight finish."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._write is not None and not self._write.done():
            await asyncio.wait({self._write}, timeout=DATABASE_TIMEOUT)

    async def report(self) -> Report:
        """Run the checks."""
        checks: dict[str, dict[str, Any]] = {}
        reasons: list[str] = []

        age = self._metrics.seconds_since_poll()
        limit = self._settings.max_poll_age
        polling_ok = age is not None and age <= limit
        checks["polling"] = {
            "ok": polling_ok,
            "seconds_since_poll": None if age is None else round(age, 1),
            "max_poll_age": limit,
        }
        if age is None:
            reasons.append("getUpdates has not succeeded since TopicDesk started")
        elif not polling_ok:
            reasons.append(f"getUpdates last succeeded {age:.0f} s ago (the limit is {limit:g} s)")

        failure = await self._database_writable()
        problem = self._db.file_is_gone() or self._metrics.store_problem
        if failure is None and problem is not None:
            failure = f"the database cannot take updates: {problem}"
        checks["database"] = {"ok": failure is None}
        if failure is not None:
            checks["database"]["error"] = failure
            reasons.append(failure)

        breaker_open = self._breaker_open()
        checks["sender"] = {
            "ok": not breaker_open,
            "circuit_breaker": "open" if breaker_open else "closed",
        }
        if breaker_open:
            reasons.append("Telegram keeps failing: the circuit breaker is open, sending paused")
        return Report(checks, reasons)

    async def _database_writable(self) -> str | None:
        """Why the database does not take a write now, or None if it does.

        Concurrent checks share one write; a write that outlasts the timeout is left to
        finish on its own (cancelling SQLite mid-statement would be worse).
        """
        if self._write is None or self._write.done():
            self._write = asyncio.create_task(self._write_check(), name="health write")
            self._write.add_done_callback(_consume)
        try:
            await asyncio.wait_for(asyncio.shield(self._write), DATABASE_TIMEOUT)
        except TimeoutError:
            return f"the database did not finish a write within {DATABASE_TIMEOUT:g} s"
        except Exception as exc:  # noqa: BLE001 - whatever it is, the database is failing
            return f"the database does not take writes: {exc}"
        return None

    async def _write_check(self) -> None:
        async with self._db.transaction() as db:
            await store.record_check(db)

    async def _healthz(self, request: web.Request) -> web.Response:
        report = await self.report()
        # Logged when the verdict changes, not at every request of a monitor.
        failing = {name for name, check in report.checks.items() if not check["ok"]}
        if failing != self._failing:
            if report.ok:
                log.info("health check ok again")
            else:
                log.warning("health check failing", reasons=report.reasons)
            self._failing = failing
        return web.json_response(
            report.as_json(),
            status=200 if report.ok else 503,
            headers={"Cache-Control": "no-store"},
        )

    async def _metrics_page(self, request: web.Request) -> web.Response:
        self._metrics.seconds_since_poll()  # the poll-age gauge, as of now
        self._metrics.breaker_open.set(1 if self._breaker_open() else 0)
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(
            body=encode(self._metrics.registry), headers={"Content-Type": content_type}
        )


def _consume(task: asyncio.Task[None]) -> None:
    """Retrieve a background write's exception, so asyncio does not warn about it."""
    if not task.cancelled():
        task.exception()


def healthz_url(settings: HealthSettings) -> str:
    """Where a client reaches /healthz: a wildcard listen address is reached on loopback."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(  # noqa: S104
        settings.host, settings.host
    )
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}/healthz"


async def ask(url: str) -> tuple[int, Any]:
    """GET a health endpoint: the HTTP status and the JSON body (None if not JSON)."""
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=ASK_TIMEOUT)) as session,
        session.get(url) as response,
    ):
        try:
            body = await response.json(content_type=None)
        except ValueError:
            body = None
        return response.status, body


async def daemon_health(settings: Settings) -> list[Check]:
    """For `topicdesk check`: what a running daemon's /healthz says, if health.listen is set."""
    from bot.preflight import Check  # noqa: PLC0415 - `check` has loaded it already

    if not settings.health.listen:
        return []
    url = healthz_url(settings.health)
    try:
        status, body = await ask(url)
    except (aiohttp.ClientError, TimeoutError) as exc:
        why = str(exc) or type(exc).__name__
        return [
            Check(
                "running daemon",
                True,
                f"nothing answers at {url} ({why}): TopicDesk is not running, or elsewhere",
                warning=True,
            )
        ]
    if not isinstance(body, dict) or body.get("status") not in {"ok", "failing"}:
        detail = f"{url} answered HTTP {status}, not a health report"
        return [Check("running daemon", False, detail)]
    if body["status"] == "ok":
        polling = body.get("checks", {}).get("polling", {})
        age = polling.get("seconds_since_poll")
        since = f"; getUpdates succeeded {age:.0f} s ago" if isinstance(age, int | float) else ""
        return [Check("running daemon", True, f"{url}: ok{since}")]
    reasons = "; ".join(str(reason) for reason in body.get("reasons", [])) or "no reason given"
    return [Check("running daemon", False, f"{url}: failing: {reasons}")]
