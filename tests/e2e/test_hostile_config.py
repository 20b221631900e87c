"""Mistakes in the configuration or the environment, as an operator meets them.

Each is the real `python -m bot` process: it must stop at once with ONE sentence on
stderr naming the key or the path, exit 2 for a configuration mistake and 1 for the
environment (a file, a server), and never show a traceback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from bot.fake_telegram import FakeTelegram
from tests.e2e.test_daemon_process import child_env, topicdesk

EXIT_FAILED = 1
EXIT_CONFIG = 2


def one_sentence(err: str, out: str = "") -> str:
    """stderr's only line; fails if there is anything else, or a traceback anywhere."""
    assert "Traceback" not in out + err, out + err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("topicdesk: ")
    return lines[0]


# --------------------------------------------------------------------------------------------
# A token that is not a token: no hang
# --------------------------------------------------------------------------------------------


async def test_a_malformed_token_stops_run_at_once_with_one_sentence(
    telegram: FakeTelegram, desk_env: dict[str, str]
) -> None:
    env = child_env(desk_env, TOPICDESK_TELEGRAM__TOKEN="123456789-cut-off-while-copying")

    # `limit`: the process is killed, and the test fails, if it has not exited by then.
    code, out, err = await topicdesk(env, "run", limit=20)

    assert code == EXIT_CONFIG
    line = one_sentence(err, out)
    assert "telegram.token is not a bot token" in line
    assert "copy it again from @BotFather" in line


# --------------------------------------------------------------------------------------------
# Configuration mistakes: exit 2
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["run", "check"])
@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("TOPICDESK_SUPPORT__ADMIN_IDS", "1,2", "support.admin_ids"),
        ("TOPICDESK_SUPPORT__ADMIN_IDS", "not json", "support.admin_ids"),
        ("TOPICDESK_TELEGRAM__API_URL", "http://127.0.0.1:1/{x}", "telegram.api_url"),
        ("TOPICDESK_TELEGRAM__API_URL", "http://127.0.0.1:99999", "telegram.api_url"),
    ],
    ids=["admin-ids-csv", "admin-ids-not-json", "api-url-brace", "api-url-port"],
)
async def test_a_configuration_mistake_names_the_variable_and_exits_2(
    telegram: FakeTelegram,
    desk_env: dict[str, str],
    command: str,
    variable: str,
    value: str,
    named: str,
) -> None:
    code, out, err = await topicdesk(child_env(desk_env, **{variable: value}), command, limit=60)

    assert code == EXIT_CONFIG, err
    line = one_sentence(err, out)
    assert f"{variable} in the environment: {named} " in line


# --------------------------------------------------------------------------------------------
# The API URL answers, but not as the Bot API: exit 1, and never blame the token
# --------------------------------------------------------------------------------------------


@pytest.fixture
async def wrong_server() -> AsyncIterator[dict[str, str]]:
    """Two URLs on 127.0.0.1: one answers an nginx-like HTML 404, one a JSON 404."""

    async def html(request: web.Request) -> web.Response:
        page = "<html><head><title>404 Not Found</title></head><body>nginx</body></html>"
        return web.Response(status=404, text=page, content_type="text/html")

    async def json_404(request: web.Request) -> web.Response:
        return web.json_response(
            {"ok": False, "error_code": 404, "description": "Not Found"}, status=404
        )

    app = web.Application()
    app.router.add_route("*", "/html/{tail:.*}", html)
    app.router.add_route("*", "/json/{tail:.*}", json_404)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield {"html": f"http://{host}:{port}/html", "json": f"http://{host}:{port}/json"}
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("answer", ["html", "json"])
async def test_an_api_url_that_answers_404_is_blamed_not_the_token(
    telegram: FakeTelegram, desk_env: dict[str, str], wrong_server: dict[str, str], answer: str
) -> None:
    env = child_env(desk_env, TOPICDESK_TELEGRAM__API_URL=wrong_server[answer])

    code, out, err = await topicdesk(env, "run", limit=60)

    assert code == EXIT_FAILED
    line = one_sentence(err, out)
    assert wrong_server[answer] in line
    assert "check telegram.api_url" in line
    assert "create a new one" not in line
    assert "rejected the bot token" not in line

    code, out, err = await topicdesk(env, "check", limit=60)
    assert code == EXIT_FAILED
    assert err == ""
    assert "Traceback" not in out
    assert "check telegram.api_url" in out
    assert "rejected the bot token" not in out


# --------------------------------------------------------------------------------------------
# storage.path that cannot be a database: exit 1
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["run", "migrate"])
@pytest.mark.parametrize(
    ("where", "says"),
    [
        ("a directory", "is a directory"),
        ("/proc/topicdesk.db", "cannot create the database there"),
        ("/proc/self/status/topicdesk.db", "cannot be used"),
    ],
    ids=["directory", "proc", "under-a-file"],
)
async def test_a_storage_path_that_cannot_hold_a_database_is_one_sentence(
    telegram: FakeTelegram,
    desk_env: dict[str, str],
    tmp_path: Path,
    command: str,
    where: str,
    says: str,
) -> None:
    path = str(tmp_path) if where == "a directory" else where
    env = child_env(desk_env, TOPICDESK_STORAGE__PATH=path)

    code, out, err = await topicdesk(env, command, limit=60)

    assert code == EXIT_FAILED
    line = one_sentence(err, out)
    assert path in line
    assert says in line


@pytest.fixture
def read_only() -> Iterator[list[Path]]:
    """Files to make read-only for the user the test runs as (root included); undone after."""
    chosen: list[Path] = []
    yield chosen
    for path in chosen:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(path)], check=False)
        path.chmod(0o600)


def make_read_only(path: Path, undo: list[Path]) -> None:
    undo.append(path)
    if os.geteuid() != 0:
        path.chmod(0o400)
        return
    # Root writes through any mode: the immutable flag is what stops it.
    chattr = shutil.which("chattr")
    done = chattr and subprocess.run([chattr, "+i", str(path)], check=False).returncode == 0
    if not done or os.access(path, os.W_OK):
        pytest.skip("cannot make a file read-only for root here (no chattr +i)")


async def test_a_read_only_database_is_one_sentence_naming_it(
    telegram: FakeTelegram, desk_env: dict[str, str], read_only: list[Path]
) -> None:
    env = child_env(desk_env)
    path = Path(desk_env["TOPICDESK_STORAGE__PATH"])
    code, _, err = await topicdesk(env, "migrate", limit=60)
    assert code == 0, err
    make_read_only(path, read_only)

    code, out, err = await topicdesk(env, "run", limit=60)

    assert code == EXIT_FAILED
    line = one_sentence(err, out)
    assert str(path) in line
    assert "read-only" in line


# --------------------------------------------------------------------------------------------
# A database that existed is never silently replaced by an empty one
# --------------------------------------------------------------------------------------------


def exists(path: Path) -> bool:
    return path.exists()


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def remove_database(path: Path) -> None:
    for file in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        file.unlink(missing_ok=True)


async def test_a_lost_database_is_not_recreated_empty(
    telegram: FakeTelegram, desk_env: dict[str, str]
) -> None:
    env = child_env(desk_env)
    path = Path(desk_env["TOPICDESK_STORAGE__PATH"])
    code, _, err = await topicdesk(env, "migrate", limit=60)
    assert code == 0, err
    marker = Path(f"{path}.id")
    assert exists(marker)
    remove_database(path)  # a wrong volume, a clean-up gone wrong...

    for command in ("run", "migrate"):
        code, out, err = await topicdesk(env, command, limit=60)
        assert code == EXIT_FAILED, command
        line = one_sentence(err, out)
        assert str(path) in line
        assert str(marker) in line
        assert "restore it from your backup" in line
        assert "--new-database" in line
        assert not exists(path), f"{command} created a new, empty database"

    code, out, _ = await topicdesk(env, "check", limit=60)
    assert code == EXIT_FAILED
    assert f"✗ database: the database {path} (storage.path) is missing" in out

    # The operator means it: start over.
    code, out, err = await topicdesk(env, "migrate", "--new-database", limit=60)
    assert code == 0, err
    assert exists(path)
    code, _, err = await topicdesk(env, "migrate", limit=60)
    assert code == 0, err


async def test_another_database_in_its_place_is_refused(
    telegram: FakeTelegram, desk_env: dict[str, str], tmp_path: Path
) -> None:
    path = Path(desk_env["TOPICDESK_STORAGE__PATH"])
    other = tmp_path / "other" / "desk.db"
    env = child_env(desk_env)
    for target in (path, other):
        code, _, err = await topicdesk(
            child_env(desk_env, TOPICDESK_STORAGE__PATH=str(target)), "migrate", limit=60
        )
        assert code == 0, err
    remove_database(path)
    shutil.copy(other, path)

    code, out, err = await topicdesk(env, "run", limit=60)

    assert code == EXIT_FAILED
    line = one_sentence(err, out)
    assert f"the database {path} (storage.path) is not the one {path}.id belongs to" in line
    assert "--new-database" in line

    code, _, err = await topicdesk(env, "migrate", "--new-database", limit=60)
    assert code == 0, err
    assert read(Path(f"{path}.id")) == read(Path(f"{other}.id"))
