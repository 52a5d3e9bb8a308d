"""SQLAlchemy 2 models: users, jobs (the durable queue), job outputs, blobs, message refs and
deliveries (the outbox). Schema changes go through alembic (`storage/migrations`); a test checks
that the migrations and these models agree."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stored as naive UTC (SQLite has no time zones), always handed out timezone-aware."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use storage.tables.utcnow()")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class JobStatus:
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ACTIVE = (QUEUED, RUNNING)
    FINISHED = (SUCCEEDED, FAILED, CANCELLED)


class User(Base):
    """One person on one platform (an identity). An identity linked to another (`/link`) names
    that one's row in `account_id`: the account, which owns everything (jobs, LoRAs, styles,
    settings, quotas); `storage.users.get_or_create` hands out the account's row."""

    __tablename__ = "users"
    __table_args__ = (
        UniqueConstraint("platform", "platform_user_id", name="uq_users_platform_user"),
        Index("ix_users_account", "account_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform: Mapped[str] = mapped_column(String(32))
    platform_user_id: Mapped[str] = mapped_column(String(128))
    display_name: Mapped[str | None] = mapped_column(String(256))
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))  # None: its own account
    role: Mapped[str | None] = mapped_column(String(16))  # set by `/admin role`; None: from the config
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Blob(Base):
    """Metadata of a content-addressed file in the blob store (key = sha256 + extension)."""

    __tablename__ = "blobs"

    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    content_type: Mapped[str] = mapped_column(String(64))
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        # In claim order (priority first, highest first): a claim reads the first row of this index
        # instead of sorting every queued job (it did, with an ascending priority here).
        Index("ix_jobs_claim", "status", text("priority DESC"), "fair_round", "id"),
        Index("ix_jobs_user", "user_id", "id"),
        Index("ix_jobs_lease", "status", "lease_expires_at"),
        Index("ix_jobs_batch", "status", "batch_key", text("priority DESC"), "fair_round", "id"),  # claim_compatible
        Index("ix_jobs_user_finished", "user_id", "finished_at"),  # the GPU-seconds of the last 24 hours
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    # Where the request came from, and so where the result goes.
    platform: Mapped[str] = mapped_column(String(32))
    chat_id: Mapped[str] = mapped_column(String(128))
    source_message_id: Mapped[str | None] = mapped_column(String(128))

    kind: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(256))
    batch_key: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)

    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    # Fair share: how many of the owner's jobs were ahead when this one was queued.
    fair_round: Mapped[int] = mapped_column(Integer, default=0)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    lease_owner: Mapped[str | None] = mapped_column(String(256))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    progress_step: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    # A line a running job adds to its progress (a training run: "loss 0.081 · about 2 min left").
    progress_note: Mapped[str | None] = mapped_column(Text)
    # The newest live preview of a running job (a JPEG of a few KB, generation.imaging.previews),
    # stored by the heartbeat; None before the first and once the job is no longer running.
    progress_preview: Mapped[bytes | None] = mapped_column(LargeBinary)
    # What the job left besides its outputs (a text job's candidates, a picture job's control maps,
    # a clip's files, a training run's outcome): storage.results.JobResult's JSON; read it with
    # `JobResult.of(job)`.
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    parent_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    parent_output_index: Mapped[int | None] = mapped_column(Integer)

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    run_seconds: Mapped[float | None] = mapped_column(Float)
    # What the job was charged against its owner's GPU-seconds quota: its share of the drawing
    # time, written with its success (a failed job is not charged: its time is refunded).
    gpu_seconds: Mapped[float | None] = mapped_column(Float)

    outputs: Mapped[list[JobOutput]] = relationship(
        back_populates="job", order_by="JobOutput.index", lazy="selectin", cascade="all, delete-orphan"
    )


class JobOutput(Base):
    __tablename__ = "job_outputs"
    __table_args__ = (UniqueConstraint("job_id", "index", name="uq_job_outputs_job_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)  # 0-based position in the batch
    seed: Mapped[int] = mapped_column(BigInteger)
    blob_key: Mapped[str] = mapped_column(ForeignKey("blobs.key"))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    parameters: Mapped[str] = mapped_column(Text)
    # The safety classifier's score (0 to 1; None: no classifier), and what delivery did with it
    # by the policy of the place it went to: allow | spoiler | blur | block (None: not sent yet).
    safety_score: Mapped[float | None] = mapped_column(Float)
    safety_action: Mapped[str | None] = mapped_column(String(16))

    job: Mapped[Job] = relationship(back_populates="outputs")


class MessageRef(Base):
    """A platform message the bot sent, and the job (and image) it shows. Buttons and replies
    resolve through this table, so they keep working after a restart."""

    __tablename__ = "message_refs"
    __table_args__ = (
        UniqueConstraint("platform", "chat_id", "message_id", name="uq_message_refs_message"),
        Index("ix_message_refs_job", "job_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform: Mapped[str] = mapped_column(String(32))
    chat_id: Mapped[str] = mapped_column(String(128))
    message_id: Mapped[str] = mapped_column(String(128))
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    output_index: Mapped[int | None] = mapped_column(Integer)  # None: the whole batch
    role: Mapped[str] = mapped_column(String(16))  # status | result | single | map
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Delivery(Base):
    """The outbox: something owed to a chat. Written in the same transaction as the job's end."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("job_id", "platform", "chat_id", "kind", name="uq_deliveries_target"),
        Index("ix_deliveries_pending", "platform", "status", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    platform: Mapped[str] = mapped_column(String(32))
    chat_id: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))  # result | failure
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | sent
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PromptStyle(Base):
    """A style saved with `/style save`: a `{prompt}` template and a negative prompt. owner_id
    None: a global style an admin added (the built-in ones live in config/styles.toml)."""

    __tablename__ = "prompt_styles"
    __table_args__ = (UniqueConstraint("owner_id", "name", name="uq_prompt_styles_owner_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(32))
    prompt: Mapped[str] = mapped_column(Text)
    negative: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Wildcard(Base):
    """A user's own wildcard list (`/wildcard add NAME`), used as `__NAME__` in their prompts."""

    __tablename__ = "wildcards"
    __table_args__ = (UniqueConstraint("owner_id", "name", name="uq_wildcards_owner_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    lines: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Asset(Base):
    """A LoRA or embedding a user uploaded (a checked .safetensors blob), or a moodboard (its
    pictures' blob keys in `info`, the first as `blob_key`): owned, private unless shared. Names are
    unique per owner and kind (stored lower case)."""

    __tablename__ = "assets"
    __table_args__ = (
        UniqueConstraint("owner_id", "kind", "name", name="uq_assets_owner_kind_name"),
        Index("ix_assets_kind_shared", "kind", "shared"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # lora | embedding | moodboard (its pictures in `info`)
    name: Mapped[str] = mapped_column(String(64))
    blob_key: Mapped[str] = mapped_column(ForeignKey("blobs.key"))
    sha256: Mapped[str] = mapped_column(String(64))
    format: Mapped[str] = mapped_column(String(32))
    architecture: Mapped[str | None] = mapped_column(String(16))
    rank: Mapped[int | None] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(BigInteger)
    info: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # triggers, title, tensors, vectors
    shared: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AddedModel(Base):
    """A model an admin added in chat (`/model add`), beside those in the settings. `entry` is a
    `config.models.ModelEntry` as JSON, so new entry fields need no migration. Names are stored
    lower case and are unique."""

    __tablename__ = "added_models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    entry: Mapped[dict[str, Any]] = mapped_column(JSON)
    added_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TrainingRun(Base):
    """A `train` job's own state, beside the job row: what it has learned so far (the last
    checkpoint, a blob written every few steps and when it yields), its captions, its samples,
    and at the end the asset it made. A worker that takes the job over resumes from here."""

    __tablename__ = "training_runs"
    __table_args__ = (Index("ix_training_runs_owner", "owner_id", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), unique=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    method: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(64))
    steps: Mapped[int] = mapped_column(Integer)  # planned: counted against the daily step budget
    checkpoint_blob: Mapped[str | None] = mapped_column(String(80))
    checkpoint_step: Mapped[int] = mapped_column(Integer, default=0)
    checkpoint_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # a checkpoint file that may be on disk with no run pointing at it: the one being written (a crash
    # before its row commits), or the one just superseded (a crash before its file is deleted);
    # a resumed run deletes it, so a killed worker leaks no checkpoint (tens of MB on a real model)
    loose_checkpoint: Mapped[str | None] = mapped_column(String(80))
    captions: Mapped[list[str] | None] = mapped_column(JSON)
    losses: Mapped[list[list[float]]] = mapped_column(JSON, default=list)  # [step, mean loss since the last point]
    samples: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # {step, blob, width, height, size}
    asset_id: Mapped[int | None] = mapped_column(ForeignKey("assets.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ClassImageSet(Base):
    """DreamBooth's class pictures, drawn once by the base model and kept: `key` says what they
    are (model, class prompt, count, size, steps); `blobs` are their PNGs in order."""

    __tablename__ = "class_image_sets"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    blobs: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WorkerRow(Base):
    """A worker process as it last announced itself (every few seconds while it runs; removed
    when it stops cleanly): what /admin status shows, and how a model no running worker serves
    is noticed. A row not renewed for a while is a worker that died or hangs."""

    __tablename__ = "workers"

    owner: Mapped[str] = mapped_column(String(120), primary_key=True)  # generation.worker.limits.make_owner_id
    host: Mapped[str] = mapped_column(String(120))
    gpu: Mapped[str | None] = mapped_column(String(16), nullable=True)
    models: Mapped[list[str]] = mapped_column(JSON, default=list)  # `--models`; empty: any model
    loaded_model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    jobs: Mapped[list[int]] = mapped_column(JSON, default=list)  # what it is drawing now
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LinkCode(Base):
    """A one-time code from `/link`, to be typed on another platform within minutes. Only its
    sha256 is kept: a leaked database holds no usable code."""

    __tablename__ = "link_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    platform: Mapped[str] = mapped_column(String(32))  # where it was asked for
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuditEntry(Base):
    """Who did what when: admin actions (roles, places), links, and refusals (quotas, bans,
    wrong link codes). `/admin audit` reads it."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_action", "action", "at"), Index("ix_audit_log_actor", "actor_id", "at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))  # the account
    platform: Mapped[str] = mapped_column(String(32))
    platform_user_id: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(32))  # role | link | unlink | refused:<why> | link_failed
    detail: Mapped[str] = mapped_column(Text, default="")


class Place(Base):
    """A chat's own settings, set by its admins with `/place`: a Discord channel or a Telegram
    chat. `settings` holds only what was set (commands.people.place reads the defaults for the rest):
    nsfw (allow | spoiler | blur | block), threshold, terms, models, negative."""

    __tablename__ = "places"

    platform: Mapped[str] = mapped_column(String(32), primary_key=True)
    chat_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
