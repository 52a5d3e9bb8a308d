"""Roles and what each may use.

    banned < default < trusted < admin

A person's role comes from, first to last: SDBOT_ADMIN_IDS (always admin: an admin cannot be
locked out from chat), SDBOT_BANNED_IDS, `/admin role` (stored on the account), SDBOT_TRUSTED_IDS,
the platform roles in SDBOT_ROLE_MAP (a Discord guild role, a Telegram chat's admins), and
else `default`. The limits of each role are the defaults below, changed per role with
SDBOT_ROLE_LIMITS (`{"default": {"gpu_seconds_per_day": 600}}`, or a `[role_limits.default]`
table in the TOML file). A limit of None is no limit.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["banned", "default", "trusted", "admin"]
ROLES: tuple[Role, ...] = ("banned", "default", "trusted", "admin")  # weakest first
# What a mapped platform role may be called in SDBOT_ROLE_MAP, besides a Discord role id.
TELEGRAM_CHAT_ADMIN = "chat_admin"


class RoleLimits(BaseModel):
    """What one account of a role may use. None: no limit."""

    model_config = ConfigDict(extra="forbid")

    jobs_per_minute: int | None = Field(None, ge=0, description="Jobs queued in any 60 seconds.")
    queued_jobs: int | None = Field(None, ge=0, description="Jobs waiting or running at once.")
    gpu_seconds_per_day: float | None = Field(
        None, ge=0, description="Drawing time charged in any 24 hours (measured by the worker; failed jobs are refunded)."
    )
    train_steps_per_day: int | None = Field(None, ge=0, description="Training steps queued in any 24 hours.")
    storage_bytes: int | None = Field(None, ge=0, description="Uploaded and trained LoRAs and embeddings in all.")


def default_limits(*, queued_jobs: int, train_steps_per_day: int, storage_bytes: int) -> dict[Role, RoleLimits]:
    """The built-in limits. `default` takes the older single settings (SDBOT_MAX_QUEUED_JOBS_PER_USER,
    SDBOT_TRAIN_DAILY_STEPS, SDBOT_ASSET_QUOTA_BYTES); trusted people get about four times as much."""
    return {
        "banned": RoleLimits(jobs_per_minute=0, queued_jobs=0, gpu_seconds_per_day=0, train_steps_per_day=0, storage_bytes=0),
        "default": RoleLimits(
            jobs_per_minute=20,
            queued_jobs=queued_jobs,
            gpu_seconds_per_day=1800,
            train_steps_per_day=train_steps_per_day,
            storage_bytes=storage_bytes,
        ),
        "trusted": RoleLimits(
            jobs_per_minute=60,
            queued_jobs=2 * queued_jobs,
            gpu_seconds_per_day=4 * 3600,
            train_steps_per_day=4 * train_steps_per_day,
            storage_bytes=4 * storage_bytes,
        ),
        "admin": RoleLimits(),
    }


def stronger(a: Role, b: Role) -> Role:
    return a if ROLES.index(a) >= ROLES.index(b) else b
