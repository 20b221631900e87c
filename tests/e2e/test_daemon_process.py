"""The `topicdesk` process as an admin meets it: start-up errors, check, logs, SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.daemon import Daemon
from bot.fake_telegram import BOT_TOKEN, GROUP_ID, FakeTelegram
from bot.preflight import StartupError, inspect, make_bot
from tests.e2e.test_conversation import ALICE, buttons, wait_for_bot_text

REPO = Path(__file__).resolve().parents[2]
OTHER_GROUP = -1002000000002


def child_env(desk_env: dict[str, str], **changes: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOPICDESK_")}
    env.update(desk_env)
    env.update(changes)
    env["PYTHONPATH"] = str(REPO)
    return env


async def topicdesk(env: dict[str, str], *args: str, limit: float = 30) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await stopped(process, limit)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def stopped(process: asyncio.subprocess.Process, limit: float = 30) -> tuple[bytes, bytes]:
    """The output of a process told to stop; killed if it does not within `limit`."""
    try:
        return await asyncio.wait_for(process.communicate(), limit)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise


async def test_a_rejected_token_says_to_make_a_new_one_with_botfather(
    telegram: FakeTelegram, desk_env: dict[str, str]
) -> None:
    wrong = "123456789:AAwrong-token-that-telegram-rejects-xyz"
    code, out, err = await topicdesk(
        child_env(desk_env, TOPICDESK_TELEGRAM__TOKEN=f"  {wrong} \n"), "run"
    )
    assert code == 1
    assert (
        "Telegram rejected the bot token: create a new one with @BotFather and set telegram.token"
        in err
    )
    assert "Traceback" not in out + err
    assert wrong not in out + err
    assert wrong.split(":")[1] not in out + err


@pytest.mark.parametrize(
    ("group", "expected"),
    [
        ({"is_forum": False}, "is not a forum: turn on Topics"),
        ({"bot_status": "member"}, 'is not an administrator of "Support desk": promote it'),
        ({"can_manage_topics": False}, 'may not manage topics in "Support desk"'),
    ],
)
async def test_a_group_that_cannot_host_tickets_stops_the_start_with_the_fix(
    telegram: FakeTelegram,
    desk_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    group: dict[str, object],
    expected: str,
) -> None:
    telegram.add_group(OTHER_GROUP, "Support desk", **group)  # type: ignore[arg-type]
    monkeypatch.setenv("TOPICDESK_SUPPORT__GROUP_ID", str(OTHER_GROUP))
    settings = load_settings()
    with pytest.raises(StartupError, match=re.escape(expected)):
        await Daemon(settings).run(handle_signals=False)

    bot = make_bot(settings)
    try:
        checks = await inspect(bot, settings)
    finally:
        await bot.session.close()
    failed = [check for check in checks if not check.ok]
    assert [check.name for check in failed] == [
        "admin rights" if "forum" not in expected else "forum"
    ]
    assert expected in failed[0].detail


async def test_a_group_that_is_not_a_forum_fails_the_process_with_one_sentence(
    telegram: FakeTelegram, desk_env: dict[str, str]
) -> None:
    telegram.add_group(OTHER_GROUP, "Support desk", is_forum=False)
    env = child_env(desk_env, TOPICDESK_SUPPORT__GROUP_ID=str(OTHER_GROUP))
    code, out, err = await topicdesk(env, "run")
    assert code == 1
    assert 'The group "Support desk" is not a forum: turn on Topics' in err
    assert "Traceback" not in out + err


async def test_check_reports_a_healthy_set_up(
    telegram: FakeTelegram, desk_env: dict[str, str]
) -> None:
    code, out, err = await topicdesk(child_env(desk_env), "check")
    assert code == 0, out + err
    assert "✓ bot token: @topicdesk_test_bot" in out
    assert "is a forum" in out
    assert "all checks passed" in out
    assert BOT_TOKEN not in out + err


async def test_a_malformed_config_names_the_file_and_the_key(
    telegram: FakeTelegram, desk_env: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "broken.toml"
    config.write_text('[support]\ngroup_id = "the support group"\n')
    env = child_env(desk_env)
    del env["TOPICDESK_SUPPORT__GROUP_ID"]
    code, out, err = await topicdesk(env, "run", "--config", str(config))
    assert code == 2
    assert f"{config}: support.group_id" in err
    assert "Traceback" not in out + err


async def test_the_daemon_logs_json_with_update_context_and_stops_cleanly_on_sigterm(
    telegram: FakeTelegram, desk_env: dict[str, str]
) -> None:
    telegram.add_user(ALICE, "Alice", "Smith")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        env=child_env(desk_env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        telegram.send_private(ALICE, "Hello")
        # The child imports aiogram first, which takes seconds on a busy machine.
        question = await wait_for_bot_text(
            telegram, ALICE, "What is your question about?", timeout=90
        )
        telegram.press_button(ALICE, ALICE, question["message_id"], buttons(question)["Billing"])
        await wait_for_bot_text(telegram, ALICE, "describe the problem")
        telegram.send_private(ALICE, "The app crashes when I pay.")
        await wait_for_bot_text(telegram, ALICE, "Your ticket #1 is open")
        telegram.send_private(ALICE, "Any news?")
        await wait_for_bot_text(telegram, GROUP_ID, "Any news?")
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = await stopped(process)
    assert process.returncode == 0, err.decode()
    text = out.decode() + err.decode()
    assert BOT_TOKEN not in text
    assert BOT_TOKEN.split(":")[1] not in text

    lines = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
    processed = [line for line in lines if line["event"] == "update processed"]
    assert len(processed) == 4  # hello, the button, the description, "Any news?"
    for line in lines:
        if "update_id" in line:
            assert line["chat_id"] == ALICE, line
    assert processed[-1]["ticket_id"] == 1
    assert processed[-1]["outcome"] == "handled"
    assert any(line["event"] == "stopped" for line in lines)
