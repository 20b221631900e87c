"""Running the playground: the sandbox (the embedded Telegram and the real desk), the page's
server on 127.0.0.1, a browser if there is one, until Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
import webbrowser
from pathlib import Path

from aiohttp import web

from bot.playground.app import Playground
from bot.sandbox import Sandbox

#: Telegram's clock runs this many times faster in the playground: the group's budget of
#: 20 sends a minute becomes 20 per 6 s, so a burst shows the pacing without a long wait.
SCALE = 10.0
HOST = "127.0.0.1"


async def start_site(playground: Playground, port: int = 0) -> tuple[web.AppRunner, str]:
    """Serve the playground on 127.0.0.1:`port` (0: a free port); the runner and the URL."""
    runner = web.AppRunner(playground.app(), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, HOST, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = int(runner.addresses[0][1])
    playground.bind(bound)
    return runner, f"http://{HOST}:{bound}/"


def serve(*, port: int = 0, open_browser: bool = True, keep: Path | None = None) -> int:
    """Run the playground until SIGINT or SIGTERM; the exit code."""
    return asyncio.run(_serve(port, open_browser=open_browser, keep=keep))


async def _serve(port: int, *, open_browser: bool, keep: Path | None) -> int:
    stop = asyncio.Event()
    async with Sandbox(scale=SCALE, database=keep) as sandbox:
        playground = Playground(sandbox)
        try:
            runner, url = await start_site(playground, port)
        except OSError as exc:
            why = os.strerror(exc.errno) if exc.errno else str(exc)
            sys.stderr.write(
                f"topicdesk: {HOST}:{port}: cannot listen there ({why.lower()}); "
                "choose another --port, or leave it out for a free one\n"
            )
            return 1
        loop = asyncio.get_running_loop()
        handled: list[signal.Signals] = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):  # Windows: Ctrl-C interrupts
                loop.add_signal_handler(signum, stop.set)
                handled.append(signum)
        try:
            sys.stdout.write(
                f"TopicDesk playground: {url}\n"
                f"  the real desk on an embedded Telegram, its clock {SCALE:g}× faster; "
                "Ctrl-C stops it\n"
            )
            if keep is not None:
                sys.stdout.write(f"  the desk's database is kept at {keep}\n")
            sys.stdout.flush()
            if open_browser:
                _open_browser(url)
            await stop.wait()
            sys.stdout.write("Stopping the desk…\n")
            sys.stdout.flush()
        finally:
            for signum in handled:
                loop.remove_signal_handler(signum)
            await runner.cleanup()
    return 0


def _open_browser(url: str) -> None:
    """Open the page in a graphical browser, if this machine seems to have one.

    Where there is no display, Python's webbrowser falls back to a text browser that would
    take over the terminal, so on Linux it is asked only under X or Wayland (or when
    $BROWSER says which). In a thread of its own, since a browser may not return at once.
    """
    graphical = sys.platform in {"darwin", "win32"} or any(
        os.environ.get(name) for name in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER")
    )
    if not graphical:
        sys.stdout.write("  (no graphical display here: open the address in your browser)\n")
        return

    def open_it() -> None:
        with contextlib.suppress(webbrowser.Error, OSError):
            webbrowser.open(url, new=2)

    threading.Thread(target=open_it, name="open-browser", daemon=True).start()
