"""config.example.toml is the reference: it loads as it is, and documents every setting."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from bot.config import Settings, load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"


def settings_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every setting as table.key (a table of tables goes one level down)."""
    keys = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys.extend(settings_keys(annotation, f"{prefix}{name}."))
        else:
            keys.append(f"{prefix}{name}")
    return keys


def documented(text: str, dotted: str) -> bool:
    """The key appears in its table, set or commented out (`key =` or `# key =`)."""
    *tables, key = dotted.split(".")
    if not tables:  # a top-level table such as [canned]
        return re.search(rf"^\[{re.escape(key)}\]", text, re.MULTILINE) is not None
    table = ".".join(tables)
    if re.search(rf"^\[\[{re.escape(dotted)}\]\]", text, re.MULTILINE):
        return True  # an array of tables, e.g. [[intake.questions]]
    header = re.search(rf"^\[\[?{re.escape(table)}(\]|\.)", text, re.MULTILINE)
    if header is None:
        return False
    setting = re.compile(rf"^#?\s*{re.escape(key)}\s*=", re.MULTILINE)
    return setting.search(text, header.start()) is not None


@pytest.mark.parametrize("key", settings_keys(Settings))
def test_every_setting_is_in_the_example(key: str) -> None:
    assert documented(EXAMPLE.read_text(encoding="utf-8"), key), (
        f"{key} is not documented in config.example.toml"
    )


def field_default(table: str, key: str) -> Any:
    section = Settings.model_fields[table].annotation
    assert isinstance(section, type)
    assert issubclass(section, BaseModel)
    field = section.model_fields[key]
    return field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]


def test_the_example_loads_as_it_is_and_its_values_are_the_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in [n for n in os.environ if n.startswith("TOPICDESK_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)

    load_settings(EXAMPLE)  # no error: every value in the example is valid

    data: dict[str, Any] = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    required = {"telegram": {"token"}, "support": {"group_id"}, "intake": {"questions"}}
    for table, values in data.items():
        section = Settings.model_fields[table].annotation
        if not (isinstance(section, type) and issubclass(section, BaseModel)):
            continue
        for key, value in values.items():
            if key in required.get(table, set()):
                continue
            default = field_default(table, key)
            if isinstance(value, dict) and isinstance(default, BaseModel):  # [sla.high]
                assert type(default).model_validate(value) == default, f"{table}.{key}"
                continue
            assert value == default or str(value) == str(default), (
                f"{table}.{key} = {value!r} in the example, but the default is {default!r}"
            )
