"""Settings sections for where things are kept and who may do what: storage and the database,
people and roles, safety."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, field_validator
from pydantic_settings import NoDecode

from config.roles import Role, RoleLimits
from config.sections.parse import CommaList, name_pairs


class StorageSettings(BaseModel):
    """Storage and database

    Where the database, pictures, uploads and trained files live. One machine needs none of these;
    with workers on several machines, see [Many machines](deploy.md#many-machines).
    """

    data_dir: Path = Field(Path("data"), description="Database, images and uploads (`blobs/`), console state.")
    database_url: str | None = Field(
        None,
        description="`postgresql+asyncpg://user@host/db` (install the `postgres` extra: `pip install -e '.[postgres]'`) "
        "runs the same migrations, queue, outbox, assets and training runs on PostgreSQL (claims with "
        "`FOR UPDATE SKIP LOCKED`); the test suite checks both. `run_bot.py worker` processes (on any machine that "
        "reaches the database and mounts `SDBOT_BLOBS_DIR`) and `run_bot.py serve --no-worker` / `console --no-worker` "
        "(the chats alone, without torch) share one PostgreSQL database; processes that start together migrate in turn "
        "(an advisory lock), and workers wake on `LISTEN/NOTIFY` when a job is queued anywhere (polling every "
        "`SDBOT_POLL_SECONDS` stays as the fallback).",
        json_schema_extra={"doc_default": "SQLite file `<data dir>/sdbot.db`"},
    )
    models_dir: Path | None = Field(
        None, description="Where the `tiny` model is built.", json_schema_extra={"doc_default": "`<data dir>/models`"}
    )
    blobs_dir: Path | None = Field(
        None,
        description="Pictures, uploads, trained files and checkpoints, content-addressed. With workers on several "
        "machines, a folder every machine mounts (the database holds only the keys).",
        json_schema_extra={"doc_default": "`<data dir>/blobs`"},
    )

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'sdbot.db').resolve()}"

    @property
    def resolved_models_dir(self) -> Path:
        return (self.models_dir or self.data_dir / "models").resolve()

    @property
    def resolved_blobs_dir(self) -> Path:
        return (self.blobs_dir or self.data_dir / "blobs").resolve()


class PeopleSettings(BaseModel):
    """People and roles

    Who is an admin, trusted or banned, which platform roles give a role, and what each role may
    use; see [People, roles and quotas](guide.md#people-roles-and-quotas). A person's role comes
    from, first to last: `SDBOT_ADMIN_IDS`, `SDBOT_BANNED_IDS`, `/admin role`, `SDBOT_TRUSTED_IDS`,
    the platform roles in `SDBOT_ROLE_MAP`, and else `default`.
    """

    admin_ids: CommaList = Field(
        default_factory=list,
        description="Comma-separated `platform:user` (e.g. `telegram:12345`) or bare user ids. Always admins: "
        "`/admin role` can't demote them.",
    )
    trusted_ids: CommaList = Field(default_factory=list, description="People with the `trusted` role, as `SDBOT_ADMIN_IDS`.")
    banned_ids: CommaList = Field(
        default_factory=list, description="People the bot refuses, as `SDBOT_ADMIN_IDS` (`/admin role` can't lift it)."
    )
    role_map: Annotated[dict[str, Role], NoDecode, BeforeValidator(name_pairs)] = Field(
        default_factory=dict,
        description="Platform roles that give a role: `discord:<guild role id>=trusted,telegram:chat_admin=trusted` "
        "(Telegram: the admins of the group the request comes from, asked of the Bot API at most every 5 min).",
    )
    role_limits: Annotated[dict[Role, RoleLimits], NoDecode] = Field(
        default_factory=dict,
        description='Per role, limits replacing the built-in ones: JSON `{"default": {"gpu_seconds_per_day": 600, '
        '"jobs_per_minute": 3}}` or a `[role_limits.default]` TOML table. Fields: `jobs_per_minute`, `queued_jobs`, '
        "`gpu_seconds_per_day`, `train_steps_per_day`, `storage_bytes`; `null` is no limit.",
        json_schema_extra={"doc_default": "the table in [People, roles and quotas](guide.md#people-roles-and-quotas)"},
    )
    link_code_minutes: int = Field(10, ge=1, le=1440, description="How long a `/link` code stays good (it works once).")
    link_failures_per_hour: int = Field(5, ge=1, description="Wrong `/link` codes one person may type in an hour; then they wait.")

    @field_validator("role_limits", mode="before")
    @classmethod
    def _role_limits(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    def is_admin(self, platform: str, user_id: str) -> bool:
        return _listed(self.admin_ids, platform, user_id)

    def configured_role(self, platform: str, user_id: str) -> Role | None:
        """The role the id lists give this identity (admin first, then banned, then trusted)."""
        for role, ids in (("admin", self.admin_ids), ("banned", self.banned_ids), ("trusted", self.trusted_ids)):
            if _listed(ids, platform, user_id):
                return role  # type: ignore[return-value]
        return None


def _listed(ids: list[str], platform: str, user_id: str) -> bool:
    return f"{platform}:{user_id}" in ids or user_id in ids


class SafetySettings(BaseModel):
    """Safety

    What scores every picture the bot draws, and what a place that set no policy of its own does
    with one that scores high; see [Safety, graded by place](guide.md#safety-graded-by-place).
    """

    safety_classifier: str | None = Field(
        None,
        description="What scores every output: `tiny` (a random tiny checker, to try the policies offline: its scores "
        "mean nothing), or a folder or Hub id downloaded once: diffusers' `StableDiffusionSafetyChecker` "
        "(`CompVis/stable-diffusion-safety-checker`) or a transformers image classifier (e.g. "
        "`Falconsai/nsfw_image_detection`). None: nothing is scored, and `/place --nsfw` is refused (it would change nothing).",
    )
    safety_labels: CommaList = Field(
        default_factory=lambda: ["nsfw", "porn", "hentai", "sexy"],
        description="An image classifier's labels whose probabilities add up to the score (at least one must be among the model's labels).",
    )
    safety_threshold: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Score from which a place's policy applies, unless `/place --threshold` sets its own. For the "
        "safety checker, 0.5 is exactly its own decision.",
    )
    safety_policy: Literal["spoiler", "blur", "block"] = Field(
        "spoiler",
        description="What places that set nothing do with a picture at or over the threshold: `spoiler`, `blur` or "
        "`block` (age-restricted channels: `allow`).",
    )
