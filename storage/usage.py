"""What an account used, for its quotas: jobs queued lately, GPU-seconds charged in the last
24 hours (storage.queue writes a job's charge with its success; a failed job is not charged),
and when that drawing time comes back."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.tables import Job, JobStatus, utcnow

DAY = timedelta(days=1)


async def jobs_since(session: AsyncSession, account_id: int, since: datetime) -> list[datetime]:
    """When the account's jobs queued since then were queued, oldest first. Answers made at once
    (`queue.record_answer`: /describe of a picture that carries its parameters) never queue and
    cost no GPU, so they are left out: they are the rows with no attempts allowed."""
    query = select(Job.created_at).where(Job.user_id == account_id, Job.created_at >= since, Job.max_attempts > 0).order_by(Job.created_at)
    return list((await session.execute(query)).scalars())


@dataclass(frozen=True)
class GpuUse:
    used: float  # seconds charged in the last 24 hours
    refunded: float  # seconds failed jobs ran in that time, not charged
    charges: list[tuple[datetime, float]]  # (finished_at, seconds), oldest first

    def back_at(self, quota: float) -> datetime | None:
        """When enough of today's charges leave the 24-hour window for the account to be under
        `quota` again (None: it already is)."""
        over = self.used - quota
        if over < 0:
            return None
        for finished, seconds in self.charges:
            over -= seconds
            if over < 0:
                return finished + DAY
        return None  # unreachable: the charges add up to `used`


async def gpu_use(session: AsyncSession, account_id: int, now: datetime | None = None) -> GpuUse:
    since = (now or utcnow()) - DAY
    query = (
        select(Job.finished_at, Job.gpu_seconds, Job.run_seconds, Job.status)
        .where(
            Job.user_id == account_id,
            Job.finished_at >= since,
            Job.kind != "train",
            Job.status.in_((JobStatus.SUCCEEDED, JobStatus.FAILED)),
        )
        .order_by(Job.finished_at)
    )
    charges, refunded = [], 0.0
    for finished, gpu_seconds, run_seconds, status in (await session.execute(query)).all():
        if status == JobStatus.SUCCEEDED and gpu_seconds:
            charges.append((finished, float(gpu_seconds)))
        elif status == JobStatus.FAILED and run_seconds:
            refunded += float(run_seconds)
    return GpuUse(sum(seconds for _, seconds in charges), refunded, charges)


async def recent_runs(session: AsyncSession, kind: str, model: str, most: int = 20) -> list[tuple[dict[str, Any], float]]:
    """The specs and run seconds of the last `most` succeeded jobs of `kind` on `model` (everyone's):
    what the command layer estimates a new job's GPU time from."""
    query = (
        select(Job.params, Job.run_seconds)
        .where(Job.kind == kind, Job.status == JobStatus.SUCCEEDED, Job.run_seconds.is_not(None))
        .order_by(Job.finished_at.desc())
        .limit(most * 4)  # the model is inside the params: read a few more, keep that model's
    )
    runs = [(params, float(seconds)) for params, seconds in (await session.execute(query)).all() if params.get("model") == model]
    return runs[:most]
