"""`topicdesk playground`: the real desk in a browser, on an embedded Telegram.

A local web page shows a customer's private chat with the bot on the left and the agents'
forum group with its topics on the right. What the visitor types goes into the embedded
Telegram (`bot.fake_telegram`) as if a customer or an agent had written it, and TopicDesk's
real daemon (`bot.sandbox`) serves it: the intake form, the topic and its card, the relays
both ways, the outbox and the rate limiter.

- `view`: the embedded Telegram's world as the page's JSON (chats, topics, counters);
- `actions`: what the visitor may do (write, press a button, burst), checked first;
- `app`: the aiohttp application (the page, the state, the actions, and their guard);
- `server`: `run_playground`, the command's body.
"""

from __future__ import annotations

import argparse
import sys


def run_playground(args: argparse.Namespace) -> int:
    """`topicdesk playground [--port N] [--no-browser] [--keep PATH]`; the exit code."""
    if not 0 <= args.port <= 65535:
        sys.stderr.write(f"topicdesk: --port {args.port}: a port is 0 (any free one) to 65535\n")
        return 2
    # aiogram's import takes a few seconds: say something before it.
    sys.stdout.write("Starting TopicDesk on an embedded Telegram…\n")
    sys.stdout.flush()
    from bot.playground.server import serve  # noqa: PLC0415 - aiogram, only when asked

    return serve(port=args.port, open_browser=not args.no_browser, keep=args.keep)
