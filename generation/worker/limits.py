"""What a worker is started with: its limits (`WorkerLimits`, from the SDBOT_* settings and its
`--models`) and its name (the owner id its leases carry, which also says whether the process
that held a lease on this host is gone)."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass

from config.settings import Settings, training_hours_open


@dataclass(frozen=True)
class WorkerLimits:
    lease_seconds: float = 30.0
    progress_seconds: float = 1.0
    poll_seconds: float = 1.0
    train_yield: bool = True  # a training run gives way to waiting drawing jobs (SDBOT_TRAIN_YIELD)
    train_hours: str | None = None  # UTC hours when training runs (SDBOT_TRAIN_HOURS); None: always
    max_batch_jobs: int = 1  # compatible txt2img jobs drawn in one pipeline call (SDBOT_MAX_BATCH_JOBS)
    max_batch_images: int = 4  # images in one batched call (SDBOT_MAX_BATCH_IMAGES)
    batch_wait_ms: int = 0  # wait this long for more compatible jobs before drawing a batch that is not full
    affinity_seconds: float = 30.0  # loaded model first, unless another job waited this long (SDBOT_AFFINITY_SECONDS)
    models: tuple[str, ...] = ()  # `worker --models a,b`: only jobs for these models; empty: any
    overlap_outputs: bool = True  # finish a job's outputs while the next one draws (SDBOT_OVERLAP_OUTPUTS)

    @classmethod
    def from_settings(cls, settings: Settings, models: tuple[str, ...] = ()) -> WorkerLimits:
        """The limits the SDBOT_* settings name (`models`: the worker's `--models`)."""
        s = settings
        return cls(
            lease_seconds=s.lease_seconds,
            progress_seconds=s.progress_seconds,
            poll_seconds=s.poll_seconds,
            train_yield=s.train_yield,
            train_hours=s.train_hours,
            max_batch_jobs=s.max_batch_jobs,
            max_batch_images=s.max_batch_images,
            batch_wait_ms=s.batch_wait_ms,
            affinity_seconds=s.affinity_seconds,
            models=models,
            overlap_outputs=s.overlap_outputs,
        )

    def skipped_kinds(self) -> tuple[str, ...]:
        """Kinds not to claim now: training outside its hours (SDBOT_TRAIN_HOURS)."""
        return () if training_hours_open(self.train_hours) else ("train",)

    def training_gives_way(self, drawing_jobs_waiting: int) -> bool:
        """A run yields at its next step when drawing jobs wait (SDBOT_TRAIN_YIELD) or when its
        hours end (SDBOT_TRAIN_HOURS); it resumes from that checkpoint when it is claimed again."""
        return (self.train_yield and drawing_jobs_waiting > 0) or not training_hours_open(self.train_hours)


def make_owner_id() -> str:
    """`host:pid:random`: unique per worker, and enough to tell whether its process still lives."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_is_dead_here(owner: str) -> bool:
    """True only when `owner` was a process on this host that no longer exists."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False  # an earlier worker in this process: its lease will run out normally
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
