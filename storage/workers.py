"""The workers' roll call: each worker process renews its row every few seconds
(`announce`), and removes it when it stops cleanly (`leave`). /admin status reads it (`roll`),
with the queue's length and its oldest waiting job (`queue_summary`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.tables import Job, JobStatus, WorkerRow, utcnow

ANNOUNCE_SECONDS = 5.0  # how often a running worker renews its row
LIVE_WITHIN = timedelta(seconds=4 * ANNOUNCE_SECONDS)  # a row older than this: the worker died or hangs
FORGET_AFTER = timedelta(days=1)  # a worker not seen for this long drops off the list


async def announce(
    session: AsyncSession,
    owner: str,
    *,
    host: str,
    gpu: str | None,
    models: list[str],
    loaded_model: str | None,
    jobs: list[int],
) -> None:
    row = await session.get(WorkerRow, owner)
    now = utcnow()
    if row is None:
        session.add(
            WorkerRow(owner=owner, host=host, gpu=gpu, models=models, loaded_model=loaded_model, jobs=jobs, started_at=now, seen_at=now)
        )
    else:
        row.gpu, row.models, row.loaded_model, row.jobs, row.seen_at = gpu, models, loaded_model, jobs, now
    await session.flush()


async def leave(session: AsyncSession, owner: str) -> None:
    await session.execute(delete(WorkerRow).where(WorkerRow.owner == owner))


async def roll(session: AsyncSession) -> list[WorkerRow]:
    """Workers seen in the last day, most recently seen first (older rows are removed)."""
    await session.execute(delete(WorkerRow).where(WorkerRow.seen_at < utcnow() - FORGET_AFTER))
    return list((await session.execute(select(WorkerRow).order_by(WorkerRow.seen_at.desc()))).scalars())


@dataclass(frozen=True)
class QueueSummary:
    queued: int
    running: int
    oldest_id: int | None
    oldest_created_at: datetime | None
    oldest_model: str | None
    queued_by_model: dict[str, int]


async def queue_summary(session: AsyncSession) -> QueueSummary:
    queued = JobStatus.QUEUED
    counts = await session.execute(select(Job.model, func.count()).where(Job.status == queued).group_by(Job.model))
    by_model = {model: count for model, count in counts}
    running = (await session.execute(select(func.count()).where(Job.status == JobStatus.RUNNING))).scalar_one()
    oldest = (await session.execute(select(Job).where(Job.status == queued).order_by(Job.created_at, Job.id).limit(1))).scalar()
    return QueueSummary(
        queued=sum(by_model.values()),
        running=running,
        oldest_id=oldest.id if oldest else None,
        oldest_created_at=oldest.created_at if oldest else None,
        oldest_model=oldest.model if oldest else None,
        queued_by_model=by_model,
    )
