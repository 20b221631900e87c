"""The baseline for catchup_bench.py: the plainest durable aiogram 3 bot.

`Dispatcher` + `dp.start_polling(bot)` against a Bot API server (the benchmark's fake),
one message handler that INSERTs one row into SQLite and commits. No form, no outbox,
no rate limiter, nothing sent back. The database has TopicDesk's durability settings
(WAL, synchronous=FULL), so each commit costs what one of TopicDesk's costs.

Updates are handled one after another (`handle_as_tasks=False`), so, as with TopicDesk,
the getUpdates call that confirms an update comes after its commit.

catchup_bench.py starts it; by hand (against a running fake):
`python benchmarks/baseline_bot.py --api-url http://127.0.0.1:PORT --db /tmp/baseline.db`
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sqlite3
import sys
from collections.abc import Sequence

from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import Message, Update

# The fake's token (bot/fake_telegram/ BOT_TOKEN); not imported, so this file runs
# with nothing but aiogram installed.
DEFAULT_TOKEN = "123456789:AAF-topicdesk-test-token-0123456789ab"


def open_db(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS messages ("
        " update_id INTEGER PRIMARY KEY,"
        " chat_id INTEGER NOT NULL,"
        " message_id INTEGER NOT NULL,"
        " text TEXT)"
    )
    db.commit()
    return db


def create_dispatcher(db: sqlite3.Connection) -> Dispatcher:
    dp = Dispatcher()

    @dp.message()
    async def store(message: Message, event_update: Update) -> None:
        db.execute(
            "INSERT OR IGNORE INTO messages (update_id, chat_id, message_id, text)"
            " VALUES (?, ?, ?, ?)",
            (event_update.update_id, message.chat.id, message.message_id, message.text),
        )
        db.commit()

    return dp


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api-url", required=True, help="the Bot API server's base URL")
    parser.add_argument("--token", default=DEFAULT_TOKEN)
    parser.add_argument("--db", required=True, help="the SQLite file to write")
    parser.add_argument("--polling-timeout", type=int, default=10)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout)
    db = open_db(args.db)
    session = AiohttpSession(api=TelegramAPIServer.from_base(args.api_url))
    bot = Bot(args.token, session=session)
    try:
        await create_dispatcher(db).start_polling(
            bot, polling_timeout=args.polling_timeout, handle_as_tasks=False
        )
    finally:
        db.close()


if __name__ == "__main__":
    asyncio.run(main())
