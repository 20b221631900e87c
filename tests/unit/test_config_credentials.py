"""The token kept out of the config: a token file, or systemd's LoadCredential=."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bot.cli import EXIT_CONFIG, main
from bot.config import ConfigError, load_settings

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
GROUP = -1001234567890

NO_TOKEN = f"""
[support]
group_id = {GROUP}
"""


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No TOPICDESK_* variable, no credentials and no ./config.toml of the developer's."""
    for name in list(os.environ):
        if name.startswith("TOPICDESK_"):
            monkeypatch.delenv(name)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.chdir(tmp_path)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def error_of(config: Path | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    return str(caught.value)


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The directory systemd names in $CREDENTIALS_DIRECTORY for LoadCredential=."""
    directory = tmp_path / "run" / "credentials" / "topicdesk.service"
    directory.mkdir(parents=True)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(directory))
    return directory


def test_the_token_is_read_from_the_file_token_file_names(tmp_path: Path) -> None:
    token_file = write(tmp_path / "etc" / "token", f"  {TOKEN}\n\n")
    config = write(tmp_path / "desk.toml", f'[telegram]\ntoken_file = "{token_file}"\n' + NO_TOKEN)

    settings = load_settings(config)

    assert settings.telegram.token.get_secret_value() == TOKEN
    assert settings.telegram.token_file == token_file


def test_token_file_can_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token_file = write(tmp_path / "token", TOKEN)
    monkeypatch.setenv("TOPICDESK_TELEGRAM__TOKEN_FILE", str(token_file))
    monkeypatch.setenv("TOPICDESK_SUPPORT__GROUP_ID", str(GROUP))

    assert load_settings().telegram.token.get_secret_value() == TOKEN


def test_a_missing_token_file_is_named_in_the_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "token"
    config = write(tmp_path / "desk.toml", f'[telegram]\ntoken_file = "{missing}"\n' + NO_TOKEN)

    assert error_of(config) == (
        f"{config}: telegram.token_file {missing} cannot be read: No such file or directory"
    )


def test_a_token_file_from_the_environment_is_blamed_on_its_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(tmp_path / "desk.toml", NO_TOKEN)
    monkeypatch.setenv("TOPICDESK_TELEGRAM__TOKEN_FILE", str(tmp_path))

    assert error_of(config) == (
        "TOPICDESK_TELEGRAM__TOKEN_FILE in the environment: "
        f"telegram.token_file {tmp_path} cannot be read: Is a directory"
    )


def test_an_empty_token_file_is_refused(tmp_path: Path) -> None:
    empty = write(tmp_path / "token", " \n")
    config = write(tmp_path / "desk.toml", f'[telegram]\ntoken_file = "{empty}"\n' + NO_TOKEN)

    assert error_of(config) == f"{config}: telegram.token_file {empty} is empty"


def test_a_token_and_a_token_file_together_are_refused(tmp_path: Path) -> None:
    token_file = write(tmp_path / "token", TOKEN)
    config = write(
        tmp_path / "desk.toml",
        f'[telegram]\ntoken = "{TOKEN}"\ntoken_file = "{token_file}"\n' + NO_TOKEN,
    )

    message = error_of(config)

    assert message == (f"{config}: telegram.token and telegram.token_file are both set: keep one")
    assert TOKEN not in message


def test_under_systemd_the_token_comes_from_the_credential(
    tmp_path: Path, credentials: Path
) -> None:
    # The usual installation: the config has no [telegram] table at all.
    write(credentials / "telegram-token", f"{TOKEN}\n")
    config = write(tmp_path / "desk.toml", NO_TOKEN)

    assert load_settings(config).telegram.token.get_secret_value() == TOKEN


def test_a_token_given_outright_wins_over_the_credential(
    tmp_path: Path, credentials: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(credentials / "telegram-token", "111:from-the-credential")
    monkeypatch.setenv("TOPICDESK_TELEGRAM__TOKEN", TOKEN)
    config = write(tmp_path / "desk.toml", NO_TOKEN)

    assert load_settings(config).telegram.token.get_secret_value() == TOKEN


def test_token_file_wins_over_the_credential(tmp_path: Path, credentials: Path) -> None:
    write(credentials / "telegram-token", "111:from-the-credential")
    token_file = write(tmp_path / "token", TOKEN)
    config = write(tmp_path / "desk.toml", f'[telegram]\ntoken_file = "{token_file}"\n' + NO_TOKEN)

    assert load_settings(config).telegram.token.get_secret_value() == TOKEN


def test_an_empty_credential_is_named_in_the_error(tmp_path: Path, credentials: Path) -> None:
    credential = write(credentials / "telegram-token", "\n")
    config = write(tmp_path / "desk.toml", NO_TOKEN)

    assert error_of(config) == (
        f"{config}: telegram.token is not set, and the systemd credential {credential} is empty"
    )


def test_without_token_file_or_credential_the_token_is_still_required(
    tmp_path: Path, credentials: Path
) -> None:
    # $CREDENTIALS_DIRECTORY exists (another credential, say) but holds no token.
    write(credentials / "something-else", "x")
    config = write(tmp_path / "desk.toml", NO_TOKEN)

    assert error_of(config) == (
        f"{config}: telegram.token is required: "
        "set it in the [telegram] table or as TOPICDESK_TELEGRAM__TOKEN"
    )


def test_the_token_from_a_file_never_shows_in_settings(tmp_path: Path, credentials: Path) -> None:
    write(credentials / "telegram-token", TOKEN)
    settings = load_settings(write(tmp_path / "desk.toml", NO_TOKEN))

    for shown in (repr(settings), str(settings), repr(settings.telegram)):
        assert TOKEN not in shown
        assert TOKEN.split(":", 1)[1] not in shown


def test_an_unreadable_token_file_exits_2_with_one_line_and_no_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "token"
    monkeypatch.setenv("TOPICDESK_TELEGRAM__TOKEN_FILE", str(missing))
    monkeypatch.setenv("TOPICDESK_SUPPORT__GROUP_ID", str(GROUP))

    code = main(["check"])

    err = capsys.readouterr().err
    assert code == EXIT_CONFIG
    assert err == (
        "topicdesk: TOPICDESK_TELEGRAM__TOKEN_FILE in the environment: "
        f"telegram.token_file {missing} cannot be read: No such file or directory\n"
    )
