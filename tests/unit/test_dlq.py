"""An admin reviews what could not be delivered: `topicdesk dlq list | retry | drop`."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.cli import EXIT_FAILED, EXIT_OK, main
from storage import deadletters, outbox, tickets
from storage.db import Database
from storage.migrations import migrate
from storage.outbox import Outgoing, Purpose

ALICE = 1001

pytestmark = pytest.mark.usefixtures("operator_shell")


async def _bury_two(path: Path) -> None:
    """Two agent replies to Alice that died because she blocked the bot."""
    migrate(path)
    db = await Database.open(path)
    try:
        async with db.transaction() as tx:
            await tickets.save_customer(tx, ALICE, "Alice Smith", None, None)
            await tickets.set_unreachable(tx, ALICE, "bot was blocked by the user")
            for n in (1, 2):
                row = await outbox.enqueue(
                    tx,
                    Outgoing(
                        key=f"reply-{n}",
                        purpose=Purpose.NOTICE,
                        method="sendMessage",
                        params={"text": f"Answer number {n}"},
                        chat_id=ALICE,
                    ),
                )
                item = await outbox.get_item(tx, row or 0)
                assert item is not None
                await deadletters.bury(tx, item, "bot was blocked by the user", attempts=1)
    finally:
        await db.close()


async def _state(path: Path) -> tuple[list[str], list[str | None], str | None]:
    db = await Database.open(path)
    try:
        async with db.reader() as tx:
            rows = await tx.fetchall("SELECT state FROM outbox ORDER BY id")
            letters = await deadletters.list_letters(tx, include_resolved=True)
            customer = await tickets.get_customer(tx, ALICE)
    finally:
        await db.close()
    assert customer is not None
    return [r["state"] for r in rows], [x.resolution for x in letters], customer.unreachable


def test_an_admin_lists_retries_and_drops_dead_letters(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_bury_two(database))

    assert main(["dlq", "list"]) == EXIT_OK
    listing = capsys.readouterr().out
    assert "bot was blocked by the user" in listing
    assert '"Answer number 1"' in listing
    assert '"Answer number 2"' in listing

    assert main(["dlq", "retry", "1"]) == EXIT_OK
    assert "1 dead letter(s) queued again" in capsys.readouterr().out
    states, resolutions, unreachable = asyncio.run(_state(database))
    assert states == ["pending", "dead"]
    assert resolutions == ["retried", None]
    assert unreachable is None  # the admin vouches for her: the sender tries again

    assert main(["dlq", "drop", "2"]) == EXIT_OK
    assert "1 dead letter(s) dropped" in capsys.readouterr().out
    assert main(["dlq", "list"]) == EXIT_OK
    assert capsys.readouterr().out.strip() == "no dead letters"
    assert main(["dlq", "list", "--all"]) == EXIT_OK
    everything = capsys.readouterr().out
    assert "[retried]" in everything
    assert "[dropped]" in everything

    assert main(["dlq", "retry", "2"]) == EXIT_FAILED
    assert "dead letter 2 does not exist or is resolved" in capsys.readouterr().err


def test_retry_all_queues_every_open_dead_letter(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_bury_two(database))
    assert main(["dlq", "retry", "--all"]) == EXIT_OK
    assert "2 dead letter(s) queued again" in capsys.readouterr().out
    states, resolutions, _ = asyncio.run(_state(database))
    assert states == ["pending", "pending"]
    assert resolutions == ["retried", "retried"]


def test_dlq_without_a_database_says_where_it_looked(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dlq", "list"]) == EXIT_FAILED
    assert f"{database}: no database here yet" in capsys.readouterr().err
    assert not database.exists()
