"""Training runs beside their jobs: created with the job, written by the worker that holds it
(every write fenced on the job's attempt with `queue.hold`, so a worker whose lease was taken
over cannot move a run back), and read by the chat side for `/train status` and the samples.

- checkpoints: the blob of the last saved state and its step; a worker that takes the job over
  resumes from it;
- samples: pictures drawn during the run, each owed to the chat as its own delivery
  (kind `sample-<step>`), so a sample is sent once, also across crashes;
- the daily step budget counts the planned steps of a person's runs of the last 24 hours.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import false, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import queue
from storage.results import JobResult
from storage.tables import Blob, ClassImageSet, Delivery, Job, JobStatus, TrainingRun, utcnow

SAMPLE_DELIVERY = "sample-"  # + the step: the delivery kind of a sample picture


async def create(session: AsyncSession, job: Job, *, owner_id: int, method: str, name: str, steps: int) -> TrainingRun:
    run = TrainingRun(job_id=job.id, owner_id=owner_id, method=method, name=name, steps=steps, losses=[], samples=[])
    session.add(run)
    await session.flush()
    return run


async def of_job(session: AsyncSession, job_id: int) -> TrainingRun | None:
    return (await session.execute(select(TrainingRun).where(TrainingRun.job_id == job_id))).scalar_one_or_none()


async def active_run(session: AsyncSession, owner_id: int) -> Job | None:
    """The person's training job that is waiting or running, if any (one at a time)."""
    query = select(Job).where(Job.user_id == owner_id, Job.kind == "train", Job.status.in_(JobStatus.ACTIVE)).order_by(Job.id).limit(1)
    return (await session.execute(query)).scalar_one_or_none()


async def asked_by(session: AsyncSession, platform: str, chat_id: str, message_id: str) -> Job | None:
    """The training job the message `message_id` asked for, if it did."""
    query = (
        select(Job)
        .where(Job.platform == platform, Job.chat_id == chat_id, Job.source_message_id == message_id, Job.kind == "train")
        .order_by(Job.id.desc())
        .limit(1)
    )
    return (await session.execute(query)).scalar_one_or_none()


async def recent(session: AsyncSession, owner_id: int, limit: int = 5, *, previews: bool = False) -> list[tuple[TrainingRun, Job]]:
    """The person's latest runs, newest first; with `previews`, their latest `/train preview`s
    instead (a preview only writes captions: it trains nothing, so it is no run)."""
    preview = func.coalesce(Job.params["preview"].as_boolean(), false())
    query = (
        select(TrainingRun, Job)
        .join(Job, Job.id == TrainingRun.job_id)
        .where(TrainingRun.owner_id == owner_id, preview == previews)
        .order_by(TrainingRun.id.desc())
        .limit(limit)
    )
    return [(run, job) for run, job in (await session.execute(query)).all()]


async def steps_back_at(session: AsyncSession, owner_id: int) -> datetime | None:
    """When the oldest run still counted in the last 24 hours stops counting (None: no run counts)."""
    query = (
        select(func.min(TrainingRun.created_at))
        .join(Job, Job.id == TrainingRun.job_id)
        .where(TrainingRun.owner_id == owner_id, TrainingRun.created_at >= utcnow() - timedelta(days=1), Job.status != JobStatus.FAILED)
    )
    oldest = (await session.execute(query)).scalar_one_or_none()  # min() keeps the column's type: aware
    return oldest + timedelta(days=1) if oldest is not None else None


async def steps_last_day(session: AsyncSession, owner_id: int) -> int:
    """Planned steps of the person's runs queued in the last 24 hours (cancelled ones count what
    they ran, failed ones nothing)."""
    since = utcnow() - timedelta(days=1)
    query = (
        select(TrainingRun.steps, TrainingRun.checkpoint_step, Job.status, Job.progress_step)
        .join(Job, Job.id == TrainingRun.job_id)
        .where(TrainingRun.owner_id == owner_id, TrainingRun.created_at >= since)
    )
    total = 0
    for steps, checkpoint_step, status, progress_step in (await session.execute(query)).all():
        if status == JobStatus.FAILED:
            continue
        total += max(checkpoint_step, progress_step) if status == JobStatus.CANCELLED else steps
    return total


# --- the worker's side (every write fenced on the job's attempt) ---------------------------------


async def writing_checkpoint(session: AsyncSession, job: Job, attempt: int, owner: str, *, blob: str) -> None:
    """Before a checkpoint's file is written: its key, as the run's loose checkpoint. A worker
    killed before `save_checkpoint` commits leaves a file that `take_loose_checkpoint` finds."""
    await queue.hold(session, job.id, attempt, owner)
    run = await _run(session, job.id)
    run.loose_checkpoint = blob
    await session.flush()


async def save_checkpoint(
    session: AsyncSession,
    job: Job,
    attempt: int,
    owner: str,
    *,
    step: int,
    blob: str,
    size: int,
    losses: list[list[float]],
) -> str | None:
    """Returns the previous checkpoint's blob key when nothing refers to it any more: the caller
    deletes the file once this transaction has committed (a checkpoint is tens of MB on a real
    model, written every few steps). Until then it is the run's loose checkpoint."""
    await queue.hold(session, job.id, attempt, owner)
    await queue.record_blob(session, blob, size, "application/octet-stream", None, None)
    run = await _run(session, job.id)
    previous = run.checkpoint_blob
    run.checkpoint_blob, run.checkpoint_step, run.checkpoint_at = blob, step, utcnow()
    run.losses = [list(point) for point in losses]
    await session.flush()
    superseded = await _forget_checkpoint(session, previous) if previous and previous != blob else None
    run.loose_checkpoint = superseded
    await session.flush()
    return superseded


async def take_loose_checkpoint(session: AsyncSession, job: Job, attempt: int, owner: str) -> str | None:
    """On resume: the key of a checkpoint file an earlier attempt may have left on disk with
    nothing pointing at it (killed mid-write, or before deleting the one it superseded), for the
    caller to delete once committed; None when there is none or something still refers to it
    (identical runs make identical checkpoints, and the blob store keeps one file for both)."""
    await queue.hold(session, job.id, attempt, owner)
    run = await _run(session, job.id)
    loose, run.loose_checkpoint = run.loose_checkpoint, None
    await session.flush()
    if loose is None or loose == run.checkpoint_blob:
        return None
    return None if await _referenced(session, loose) else loose


async def save_captions(session: AsyncSession, job: Job, attempt: int, owner: str, captions: list[str]) -> None:
    await queue.hold(session, job.id, attempt, owner)
    run = await _run(session, job.id)
    run.captions = list(captions)
    await session.flush()


async def add_sample(
    session: AsyncSession,
    job: Job,
    attempt: int,
    owner: str,
    *,
    step: int,
    blob: str,
    width: int,
    height: int,
    size: int,
    deliver: bool = True,
) -> None:
    """A sample picture of the run at `step`, owed to the chat (unless it is the last, which
    comes with the result)."""
    await queue.hold(session, job.id, attempt, owner)
    await queue.record_blob(session, blob, size, "image/png", width, height)
    run = await _run(session, job.id)
    if any(sample["step"] == step for sample in run.samples):
        return  # drawn again after a resume: the first is kept, and was already owed
    run.samples = [*run.samples, {"step": step, "blob": blob, "width": width, "height": height, "size": size}]
    if deliver:
        session.add(Delivery(job_id=job.id, platform=job.platform, chat_id=job.chat_id, kind=f"{SAMPLE_DELIVERY}{step}"))
    await session.flush()


async def finish(
    session: AsyncSession,
    job: Job,
    attempt: int,
    owner: str,
    *,
    asset_id: int | None,
    result: JobResult,
    run_seconds: float,
    losses: list[list[float]] | None = None,
) -> str | None:
    """The run's end: its asset recorded, its whole loss history kept (checkpoints save it only
    every few steps, and a short run may save none), and the job completed with its result, in
    one transaction with the job's outbox row. Returns the last checkpoint's blob key to delete
    once committed (what the run learned is the asset now), when nothing else refers to it."""
    run = await _run(session, job.id)
    run.asset_id = asset_id
    if losses is not None:
        run.losses = [list(point) for point in losses]
    await queue.complete(session, job, attempt, owner=owner, outputs=[], run_seconds=run_seconds, result=result)
    last, run.checkpoint_blob, run.loose_checkpoint = run.checkpoint_blob, None, None  # a loose one was deleted after its save
    await session.flush()
    return await _forget_checkpoint(session, last) if last else None


async def _forget_checkpoint(session: AsyncSession, key: str) -> str | None:
    """Drop a checkpoint's blob row unless another run still points at it (identical runs make
    identical checkpoints: the blob store keeps one file for both)."""
    if await _referenced(session, key):
        return None
    blob = await session.get(Blob, key)
    if blob is not None:
        await session.delete(blob)
    return key


async def _referenced(session: AsyncSession, key: str) -> bool:
    """Whether a run has the checkpoint `key` as its own, or is writing or deleting it."""
    query = select(TrainingRun.id).where(or_(TrainingRun.checkpoint_blob == key, TrainingRun.loose_checkpoint == key))
    return (await session.execute(query.limit(1))).first() is not None


async def _run(session: AsyncSession, job_id: int) -> TrainingRun:
    run = await of_job(session, job_id)
    if run is None:
        raise LookupError(f"job {job_id} has no training run")
    return run


# --- DreamBooth's class pictures ---------------------------------------------------------------


async def class_images(session: AsyncSession, key: str) -> list[str] | None:
    found = await session.get(ClassImageSet, key)
    return list(found.blobs) if found else None


async def save_class_images(session: AsyncSession, key: str, blobs: list[str], sizes: list[tuple[int, int, int]]) -> None:
    """`sizes`: (bytes, width, height) of each PNG."""
    for blob, (size, width, height) in zip(blobs, sizes, strict=True):
        await queue.record_blob(session, blob, size, "image/png", width, height)
    if await session.get(ClassImageSet, key) is None:
        session.add(ClassImageSet(key=key, blobs=list(blobs)))
    await session.flush()
