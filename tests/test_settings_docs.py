"""The settings in sections: one flat `Settings` read from the environment, `.env` and TOML as
before, every field in exactly one section with words for the page, and docs/configuration.md
exactly what `python -m config.settings_docs` writes."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest
from pydantic import ValidationError

from config import Settings
from config.settings_docs import COMMAND, PAGE, documented_default, render, section_title, sections


def test_the_configuration_page_is_current() -> None:
    written, expected = PAGE.read_text(encoding="utf-8"), render()
    if written != expected:
        # The first lines of the difference, not two whole pages: enough to see what changed.
        diff = difflib.unified_diff(written.splitlines(), expected.splitlines(), "docs/configuration.md", "generated", lineterm="", n=1)
        pytest.fail(f"docs/configuration.md is stale: run `.venv/bin/{COMMAND}`\n" + "\n".join(list(diff)[:30]), pytrace=False)


def test_every_field_is_in_exactly_one_section() -> None:
    owned = [name for section in sections() for name in section.model_fields]
    assert sorted(owned) == sorted(Settings.model_fields)  # none twice, none outside a section


@pytest.mark.parametrize("section", sections(), ids=lambda section: section.__name__)
def test_each_section_has_a_title_a_paragraph_and_described_fields(section: type) -> None:
    title, paragraph = section_title(section)
    assert title and paragraph and "\n" not in title
    for name, field in section.model_fields.items():
        assert field.description and field.description.strip().endswith((".", ")")), f"{name}: a sentence, please"
        # `doc_default` is the one extra key the page reads; a misspelt one would be silently ignored.
        assert set(field.json_schema_extra or {}) <= {"doc_default"}, name
        assert documented_default(name, field)


def test_defaults_are_written_as_people_type_them() -> None:
    fields = Settings.model_fields
    assert documented_default("channels_last", fields["channels_last"]) == "`false`"
    assert documented_default("attention", fields["attention"]) == "`sdpa`"
    assert documented_default("max_pixels", fields["max_pixels"]) == "1048576 (1024×1024)"
    assert documented_default("max_upload_bytes", fields["max_upload_bytes"]) == "20971520 (20 MiB)"
    assert documented_default("min_cfg", fields["min_cfg"]) == "1"
    assert documented_default("safety_labels", fields["safety_labels"]) == "`nsfw,porn,hentai,sexy`"
    assert documented_default("data_dir", fields["data_dir"]) == "`./data`"
    assert documented_default("segmenter", fields["segmenter"]) == "none"
    assert documented_default("database_url", fields["database_url"]) == "SQLite file `<data dir>/sdbot.db`"


def test_fields_of_every_section_read_from_env_dotenv_and_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sources, their precedence and each section's parsing of text reach the inherited fields."""
    toml = tmp_path / "sdbot.toml"
    toml.write_text('max_steps = 60\nmax_batch = 2\nadmin_ids = ["telegram:1", 2]\n[motion_adapters.m]\nsource = "/m"\n')
    (tmp_path / ".env").write_text("SDBOT_MAX_STEPS=70\nSDBOT_UPSCALERS=r=/r.safetensors\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SDBOT_CONFIG", str(toml))
    monkeypatch.setenv("SDBOT_MAX_STEPS", "80")
    monkeypatch.setenv("SDBOT_TELEGRAM_ALLOWED_CHATS", "-1, 2")
    monkeypatch.setenv("SDBOT_ROLE_MAP", "discord:9=trusted")
    monkeypatch.setenv("SDBOT_TRAIN_HOURS", "22-6")
    settings = Settings()
    assert (settings.max_steps, settings.max_batch) == (80, 2)  # environment over .env over TOML
    assert settings.admin_ids == ["telegram:1", "2"] and settings.telegram_allowed_chats == ["-1", "2"]
    assert settings.upscalers == {"r": "/r.safetensors"} and settings.role_map == {"discord:9": "trusted"}
    assert settings.motion_adapters["m"].source == "/m" and settings.train_hours == "22-6"
    assert settings.resolved_models_dir == (tmp_path / "data" / "models").resolve()  # a section's own property


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SDBOT_TRAIN_HOURS", "25", "training hours"),  # a section's field validator
        ("SDBOT_UPSCALERS", "no-equals", "name=path pairs"),  # a shared parsing type
        ("SDBOT_MIN_SIDE", "4096", "SDBOT_MIN_SIDE must not exceed SDBOT_MAX_SIDE"),  # the check across sections
        ("SDBOT_DEFAULT_FRAMES", "4", "SDBOT_DEFAULT_FRAMES must lie between"),
    ],
)
def test_bad_values_are_still_refused(variable: str, value: str, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=message):
        Settings(_env_file=None)
