"""The operator at the terminal: `topicdesk migrate`, `topicdesk check`, and clear refusals."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli import EXIT_CONFIG, EXIT_OK, main
from storage.migrations import discover
from tests.unit.conftest import GROUP, TOKEN

ALL_MIGRATIONS = ", ".join(f"{m.version:04d}_{m.name}" for m in discover())

REPO = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("operator_shell")


def test_migrate_creates_the_database_and_says_what_it_applied(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate"]) == EXIT_OK

    out, err = capsys.readouterr()
    assert database.is_file()
    assert out == f"{database}: applied {ALL_MIGRATIONS}\n"
    assert err == ""


def test_migrating_twice_is_already_up_to_date(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate"]) == EXIT_OK
    capsys.readouterr()

    assert main(["migrate"]) == EXIT_OK

    assert capsys.readouterr().out == f"{database}: already up to date\n"


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["migrate", "--config", "{config}"], id="after-the-command"),
        pytest.param(["--config", "{config}", "migrate"], id="before-the-command"),
    ],
)
def test_migrate_reads_the_config_file_it_is_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    database = tmp_path / "from-file.db"
    config = tmp_path / "etc" / "desk.toml"
    config.parent.mkdir()
    config.write_text(
        f'[telegram]\ntoken = "{TOKEN}"\n[support]\ngroup_id = {GROUP}\n'
        f'[storage]\npath = "{database}"\n',
        encoding="utf-8",
    )

    code = main([arg.format(config=config) for arg in argv])

    out, err = capsys.readouterr()
    assert (code, err) == (EXIT_OK, "")
    assert out == f"{database}: applied {ALL_MIGRATIONS}\n"


def test_a_malformed_config_is_one_line_naming_the_key_and_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[telegram]\ntoken = "{TOKEN}"\n[support]\ngroup_id = "the support group"\n',
        encoding="utf-8",
    )

    code = main(["migrate", "--config", str(config)])

    out, err = capsys.readouterr()
    assert code == EXIT_CONFIG
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"topicdesk: {config}: support.group_id ")
    assert "Traceback" not in err
    assert not (tmp_path / "topicdesk.db").exists()


def test_check_with_a_token_that_is_not_a_token_sends_the_operator_to_botfather(
    database: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TOPICDESK_TELEGRAM__TOKEN", "not-a-token")

    code = main(["check"])

    # A mangled token is a configuration error, found before anything is opened: exit 2.
    out, err = capsys.readouterr()
    assert code == EXIT_CONFIG
    assert out == ""
    assert err == (
        "topicdesk: TOPICDESK_TELEGRAM__TOKEN in the environment: telegram.token is not a "
        "bot token (it looks like 123456:ABC-DEF...): copy it again from @BotFather\n"
    )


def test_python_dash_m_bot_migrates_from_any_directory(database: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {name: value for name, value in os.environ.items() if not name.startswith("TOPICDESK_")}
    env |= {
        "PYTHONPATH": str(REPO),
        "TOPICDESK_TELEGRAM__TOKEN": TOKEN,
        "TOPICDESK_SUPPORT__GROUP_ID": str(GROUP),
        "TOPICDESK_STORAGE__PATH": str(database),
    }

    done = subprocess.run(
        [sys.executable, "-m", "bot", "migrate"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{database}: applied {ALL_MIGRATIONS}\n"
    assert database.is_file()
