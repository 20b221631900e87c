"""Setting up the desk: one TOML file, the environment on top, and errors a person can act on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bot.config import ConfigError, Settings, load_settings

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
GROUP = -1001234567890

A_CONFIG = f"""
[telegram]
token = "{TOKEN}"

[support]
group_id = {GROUP}
admin_ids = [7]

[storage]
path = "from-file.db"
"""


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No TOPICDESK_* variable and no ./config.toml of the developer's leaks in."""
    for name in list(os.environ):
        if name.startswith("TOPICDESK_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def error_of(config: Path | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    return str(caught.value)


def test_settings_are_read_from_a_toml_file(tmp_path: Path) -> None:
    config = write(tmp_path / "desk.toml", A_CONFIG)

    settings = load_settings(config)

    assert settings.telegram.token.get_secret_value() == TOKEN
    assert settings.telegram.api_url == "https://api.telegram.org"
    assert settings.support.group_id == GROUP
    assert settings.support.admin_ids == [7]
    assert settings.storage.path == Path("from-file.db")
    assert [q.id for q in settings.intake.questions] == ["category", "description"]


def test_config_toml_in_the_working_directory_is_the_default(tmp_path: Path) -> None:
    write(tmp_path / "config.toml", A_CONFIG)

    assert load_settings().support.group_id == GROUP


def test_the_environment_wins_over_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(tmp_path / "desk.toml", A_CONFIG)
    monkeypatch.setenv("TOPICDESK_TELEGRAM__TOKEN", "42:from-the-environment")
    monkeypatch.setenv("TOPICDESK_TELEGRAM__API_URL", "http://localhost:8081/")
    monkeypatch.setenv("TOPICDESK_SUPPORT__GROUP_ID", "-1009999")
    monkeypatch.setenv("TOPICDESK_SUPPORT__ADMIN_IDS", "[1,2]")
    monkeypatch.setenv("TOPICDESK_STORAGE__PATH", "/var/lib/topicdesk/desk.db")

    settings = load_settings(config)

    assert settings.telegram.token.get_secret_value() == "42:from-the-environment"
    assert settings.telegram.api_url == "http://localhost:8081"
    assert settings.support.group_id == -1009999
    assert settings.support.admin_ids == [1, 2]
    assert settings.storage.path == Path("/var/lib/topicdesk/desk.db")


def test_the_environment_alone_is_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOPICDESK_TELEGRAM__TOKEN", TOKEN)
    monkeypatch.setenv("TOPICDESK_SUPPORT__GROUP_ID", str(GROUP))

    settings = load_settings()

    assert settings.telegram.token.get_secret_value() == TOKEN
    assert settings.support.group_id == GROUP
    assert settings.storage.path == Path("topicdesk.db")


def test_a_token_pasted_with_spaces_is_trimmed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOPICDESK_TELEGRAM__TOKEN", f"  {TOKEN}\n")
    monkeypatch.setenv("TOPICDESK_SUPPORT__GROUP_ID", str(GROUP))

    assert load_settings().telegram.token.get_secret_value() == TOKEN


def test_malformed_toml_names_the_file(tmp_path: Path) -> None:
    config = write(tmp_path / "desk.toml", "[telegram\ntoken = 1\n")

    message = error_of(config)

    assert message.startswith(f"{config}: this is not valid TOML")


def test_a_value_of_the_wrong_type_names_the_key_and_the_file(tmp_path: Path) -> None:
    config = write(tmp_path / "desk.toml", A_CONFIG.replace(str(GROUP), '"my group"'))

    message = error_of(config)

    assert message.startswith(f"{config}: support.group_id ")
    assert "integer" in message


def test_a_misspelt_key_is_reported(tmp_path: Path) -> None:
    config = write(tmp_path / "desk.toml", A_CONFIG + "\n[logging]\nlevle = 'DEBUG'\n")

    message = error_of(config)

    assert message == f"{config}: logging.levle is not a known setting " + (
        "(check the spelling against config.example.toml)"
    )


def test_a_misspelt_table_is_reported(tmp_path: Path) -> None:
    config = write(tmp_path / "desk.toml", A_CONFIG + "\n[storrage]\npath = 'x.db'\n")

    assert "storrage is not a known setting" in error_of(config)


def test_a_missing_required_key_names_its_environment_variable(tmp_path: Path) -> None:
    config = write(
        tmp_path / "desk.toml", A_CONFIG.replace(f'token = "{TOKEN}"', "local_api = false")
    )

    message = error_of(config)

    assert message == (
        f"{config}: telegram.token is required: "
        "set it in the [telegram] table or as TOPICDESK_TELEGRAM__TOKEN"
    )


def test_a_token_missing_with_its_whole_table_still_names_its_environment_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The usual case under systemd: the file has no [telegram] table and the token's
    # variable was not set. TOPICDESK_TELEGRAM is not a variable anyone should set.
    monkeypatch.setenv("TOPICDESK_SUPPORT__GROUP_ID", str(GROUP))

    message = error_of()

    assert message == (
        "the environment: telegram.token is required: "
        "set it in the [telegram] table or as TOPICDESK_TELEGRAM__TOKEN"
    )


def test_a_bad_value_from_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TOPICDESK_TELEGRAM__TOKEN", TOKEN)
    monkeypatch.setenv("TOPICDESK_SUPPORT__GROUP_ID", "the support group")

    message = error_of()

    assert message.startswith("TOPICDESK_SUPPORT__GROUP_ID in the environment: support.group_id")


def test_a_positive_group_id_is_refused(tmp_path: Path) -> None:
    config = write(tmp_path / "desk.toml", A_CONFIG.replace(str(GROUP), "1234567890"))

    message = error_of(config)

    assert message.startswith(f"{config}: support.group_id must be the supergroup's id")


def test_an_empty_token_is_refused(tmp_path: Path) -> None:
    config = write(tmp_path / "desk.toml", A_CONFIG.replace(TOKEN, "   "))

    assert error_of(config) == f"{config}: telegram.token is empty"


def test_topicdesk_config_points_at_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(tmp_path / "etc" / "topicdesk" / "config.toml", A_CONFIG)
    write(tmp_path / "config.toml", A_CONFIG.replace(str(GROUP), "-1005"))
    monkeypatch.setenv("TOPICDESK_CONFIG", str(config))

    settings = load_settings()

    assert settings.support.group_id == GROUP


def test_a_config_file_named_explicitly_must_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOPICDESK_TELEGRAM__TOKEN", TOKEN)
    monkeypatch.setenv("TOPICDESK_SUPPORT__GROUP_ID", str(GROUP))
    missing = tmp_path / "nowhere.toml"

    assert error_of(missing) == f"{missing}: the config file does not exist"

    monkeypatch.setenv("TOPICDESK_CONFIG", str(missing))
    assert error_of() == f"{missing}: the config file does not exist"


def test_the_token_never_shows_when_settings_are_printed(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path / "desk.toml", A_CONFIG))
    secret_half = TOKEN.split(":", 1)[1]

    for shown in (repr(settings), str(settings), repr(settings.telegram), str(settings.telegram)):
        assert TOKEN not in shown
        assert secret_half not in shown


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path / "desk.toml", A_CONFIG))

    with pytest.raises(ValueError, match="frozen"):
        settings.support.group_id = -1  # type: ignore[misc]
    assert isinstance(settings, Settings)
