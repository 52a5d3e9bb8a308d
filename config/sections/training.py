"""The training section of the settings, and the training hours it reads."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, Field, field_validator


def parse_hours(text: str) -> tuple[int, int]:
    """`22-6` -> (22, 6): from the start hour up to (not including) the end hour, UTC, across
    midnight when the end comes first. Raises ValueError with what is wrong."""
    start, dash, end = text.strip().partition("-")
    if not dash or not start.strip().isdigit() or not end.strip().isdigit():
        raise ValueError(f"training hours must look like `22-6` (from 22:00 to 06:00 UTC), not `{text}`")
    first, last = int(start), int(end)
    if not (0 <= first <= 23 and 0 <= last <= 24) or first == last % 24:
        raise ValueError(f"training hours `{text}`: hours are 0-24 and the start differs from the end")
    return first, last


def training_hours_open(text: str | None, now: datetime | None = None) -> bool:
    """Whether training may run now (SDBOT_TRAIN_HOURS; None: always)."""
    if not text:
        return True
    first, last = parse_hours(text)
    hour = (now or datetime.now(UTC)).astimezone(UTC).hour
    return first <= hour < last if first < last else hour >= first or hour < last


class TrainingSettings(BaseModel):
    """Training

    LoRAs, LyCORIS, DreamBooth and embeddings trained from chat with `/train`: how much one run
    may take in, how far it may go, and when it runs; see [Training](guide.md#training).
    """

    train_min_images: int = Field(3, ge=1, description="Fewest pictures a `/train` run accepts (after duplicates are dropped).")
    train_max_images: int = Field(
        40, ge=1, description="Most pictures a `/train` run accepts (attachments and zip together, after duplicates are dropped)."
    )
    train_max_zip_bytes: int = Field(
        200 * 1024 * 1024, ge=1024, description="What the zips of one `/train` may hold once unpacked (zip bombs stop here)."
    )
    train_max_steps: int = Field(3000, ge=1, description="Most `--steps` of one run.")
    train_daily_steps: int = Field(
        6000,
        ge=1,
        description="Training steps one person of the `default` role may queue per 24 hours (`trusted`: four times as "
        "many; admins: no limit).",
    )
    train_max_resolution: int = Field(1024, ge=32, description="Largest `--resolution` (the side of a training bucket).")
    train_checkpoint_steps: int = Field(
        50,
        ge=1,
        description="A run saves its state (weights, optimizer, step) to the blob store this often; a new worker resumes from it.",
    )
    train_yield: bool = Field(True, description="A run checkpoints and hands the worker over when drawing jobs are waiting, then resumes.")
    train_hours: str | None = Field(
        None,
        description="UTC hours when runs may start or go on, e.g. `22-6` (from 22:00 to 06:00); outside them they wait. Empty: always.",
        json_schema_extra={"doc_default": "none (always)"},
    )

    @field_validator("train_hours")
    @classmethod
    def _hours(cls, value: str | None) -> str | None:
        if value:
            parse_hours(value)
        return value or None
