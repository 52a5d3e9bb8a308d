"""sdbot settings: `SDBOT_*` environment variables, a `.env` file, and an optional TOML file.

Precedence, highest first: arguments to `Settings(...)`, environment, `.env`, the TOML file
(`SDBOT_CONFIG`, default `./sdbot.toml` when it exists), the defaults. The fields live in
sections (config/sections/), composed here into one flat `Settings`: `settings.max_steps`, the
variable `SDBOT_MAX_STEPS` and the TOML key `max_steps` name the same field whatever its section.
docs/configuration.md is written from the sections by `python -m config.settings_docs`; a test
fails when it is stale.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from config.roles import Role, RoleLimits, default_limits
from config.sections import (
    ClipSettings,
    ControlSettings,
    DefaultSettings,
    DiscordSettings,
    HelperModelSettings,
    LimitSettings,
    ModelSettings,
    OperationsSettings,
    PeopleSettings,
    PromptFeatureSettings,
    SafetySettings,
    StorageSettings,
    TelegramSettings,
    TrainingSettings,
    UploadSettings,
    UpscaleSettings,
    WorkerSettings,
)
from config.sections.engine import DEFAULT_MODEL
from config.sections.training import parse_hours, training_hours_open

# Importers of these names from here before the sections existed keep working.
__all__ = ["DEFAULT_MODEL", "Settings", "load_settings", "parse_hours", "training_hours_open"]


def _config_file() -> Path:
    return Path(os.environ.get("SDBOT_CONFIG", "sdbot.toml"))


# The bases are the sections in the order docs/configuration.md shows them. Pydantic collects
# inherited fields from the last base to the first, so `model_fields` runs in another order;
# nothing depends on it (config.settings_docs reads the sections, not `model_fields`).
class Settings(
    ModelSettings,
    HelperModelSettings,
    ControlSettings,
    StorageSettings,
    PeopleSettings,
    SafetySettings,
    LimitSettings,
    DefaultSettings,
    UpscaleSettings,
    PromptFeatureSettings,
    UploadSettings,
    TrainingSettings,
    ClipSettings,
    WorkerSettings,
    OperationsSettings,
    TelegramSettings,
    DiscordSettings,
    BaseSettings,
):
    model_config = SettingsConfigDict(env_prefix="SDBOT_", env_file=".env", env_file_encoding="utf-8", extra="ignore")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=_config_file())
        return (init_settings, env_settings, dotenv_settings, toml, file_secret_settings)

    # Checks across sections; each section validates its own fields.
    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.min_side > self.max_side:
            raise ValueError("SDBOT_MIN_SIDE must not exceed SDBOT_MAX_SIDE")
        if self.min_cfg > self.max_cfg:
            raise ValueError("SDBOT_MIN_CFG must not exceed SDBOT_MAX_CFG")
        if self.default_steps > self.max_steps:
            raise ValueError("SDBOT_DEFAULT_STEPS must not exceed SDBOT_MAX_STEPS")
        if self.default_n > self.max_batch:
            raise ValueError("SDBOT_DEFAULT_N must not exceed SDBOT_MAX_BATCH")
        if not self.min_frames <= self.default_frames <= self.max_frames:
            raise ValueError("SDBOT_DEFAULT_FRAMES must lie between SDBOT_MIN_FRAMES and SDBOT_MAX_FRAMES")
        if self.default_fps > self.max_fps:
            raise ValueError("SDBOT_DEFAULT_FPS must not exceed SDBOT_MAX_FPS")
        if not self.min_cfg <= self.default_cfg <= self.max_cfg:
            raise ValueError("SDBOT_DEFAULT_CFG must lie between SDBOT_MIN_CFG and SDBOT_MAX_CFG")
        return self

    def secret_values(self) -> list[str]:
        """Every secret in the settings, for the log redaction in run_bot.py."""
        secrets = [self.telegram_token, self.telegram_webhook_secret, self.discord_token]
        values = [secret.get_secret_value() for secret in secrets if secret is not None]
        if self.database_url:
            from sqlalchemy.engine import make_url

            password = make_url(self.database_url).password
            if password:
                values.append(str(password))
        return values

    def limits(self, role: Role) -> RoleLimits:
        """What `role` may use: the built-in limits with SDBOT_ROLE_LIMITS' fields over them."""
        built_in = default_limits(
            queued_jobs=self.max_queued_jobs_per_user,
            train_steps_per_day=self.train_daily_steps,
            storage_bytes=self.asset_quota_bytes,
        )[role]
        override = self.role_limits.get(role)
        return built_in.model_copy(update=override.model_dump(exclude_unset=True)) if override else built_in


def load_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)
