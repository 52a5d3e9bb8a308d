"""Settings sections for running the service: the worker and its queue, health and logs."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class WorkerSettings(BaseModel):
    """Worker and queue

    How workers claim, batch and run jobs, and how often processes look again at what changed.
    With several workers, see [Many machines](deploy.md#many-machines).
    """

    lease_seconds: float = Field(
        30.0,
        gt=0,
        description="A running job's lease; the worker renews it every third. A job whose worker vanished runs again after it.",
    )
    max_attempts: int = Field(3, ge=1, description="Runs of a job, crashes included, before it fails with a message to its owner.")
    poll_seconds: float = Field(1.0, gt=0, description="How often queues are polled when nothing wakes them sooner.")
    model_sync_seconds: float = Field(
        2.0,
        ge=0,
        description="A bot process rereads the models admins added or removed in chat (`/model add`) at most this often, "
        "at a request; workers reread them before every job. 0: at every request.",
    )
    role_cache_seconds: float = Field(
        2.0,
        ge=0,
        description="A bot process keeps who a person is (their account, and its role from the config, `/admin role`, "
        "their linked identities and platform roles) this long; `/admin role`, `/link` and `/unlink` clear it in their own "
        "process at once, other processes see them within this time (a job queued meanwhile still goes to the linked account). Resolving costs a transaction: 8.5 ms against 5.0 ms for a `/queue` on "
        "SQLite (`bench/people_cost.py`). 0: at every request.",
    )
    progress_seconds: float = Field(1.0, gt=0, description="Least time between progress writes of a running job.")
    max_batch_jobs: int = Field(
        4,
        ge=1,
        le=64,
        description="Compatible txt2img jobs (same model, size, steps, sampler, CFG, clip skip, VAE, tiling, LoRAs and "
        "embeddings; any prompts, seeds and `--n`) a worker claims together and draws in one pipeline call; each is "
        "completed and delivered on its own, with the pixels it gets alone. 1: no batching. ControlNet, regional "
        "prompts, prompt editing (`[a:b:when]`) and wildcards always run alone.",
    )
    max_batch_images: int = Field(
        4,
        ge=1,
        le=256,
        description="Most images (the jobs' `--n` together) in one batched call: bounds the GPU memory of a batch. The "
        "default equals `SDBOT_MAX_BATCH`, so a batch needs no more memory than the largest single job; raise both "
        "together where the GPU has room (`bench/batching.py` measures the gain). A batch that runs out of memory "
        "draws its jobs one by one.",
    )
    batch_wait_ms: int = Field(
        0,
        ge=0,
        le=10_000,
        description="How long a worker waits for more compatible jobs before it draws a batch that is not full (at most "
        "10000). 0: never waits.",
    )
    affinity_seconds: float = Field(
        30.0,
        ge=0,
        description="A worker takes jobs for the model it has loaded before others (a model swap costs seconds), but a "
        "job that has waited this long goes first whatever its model, so no job starves. 0: the fair order alone.",
    )
    overlap_outputs: bool = Field(
        True,
        description="A worker starts drawing the next job while the last one's pictures are encoded, scored, stored and "
        "completed on other threads (at most one job's outputs at a time), so the GPU does not wait on them "
        "(`bench/utilization.py` measures the GPU's busy share). A job is still completed only once its outputs are "
        "stored. Off: each job ends before the next is claimed.",
    )


class OperationsSettings(BaseModel):
    """Health and logs

    What an operator watches: the health endpoint and the log. See [Operations](deploy.md#operations).
    """

    health_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="Serve `GET /healthz` on this port; `0`: any free port (the log says which). `--health-port N` "
        "overrides it per process.",
        json_schema_extra={"doc_default": "none (no endpoint)"},
    )
    health_host: str = Field(
        "127.0.0.1",
        description="Address the health endpoint listens on (`0.0.0.0` for a probe from another machine; the answer "
        "names hosts, models and job ids).",
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        description="`text`, or `json`: one JSON object per line (`ts`, `level`, `logger`, `message`, and `job_id`, "
        "`attempt`, `owner` when known).",
    )
    log_level: str = Field("INFO", description="Log level (logs go to stderr).")
