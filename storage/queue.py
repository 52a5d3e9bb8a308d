"""The durable job queue: enqueue, claim with a lease, heartbeat, complete, fail, retry, cancel.

Rules that make it safe with several workers and crashes at any point:
- A claim takes queued jobs in claim order (priority, then jobs that waited past the affinity
  bound, then the worker's loaded model, then the owner's round, then age) with FOR UPDATE SKIP
  LOCKED (dropped on SQLite, where BEGIN IMMEDIATE serialises claims), bumps the attempt counter
  and sets a lease; `claim_compatible` adds, in the same transaction, jobs that can share the
  first one's pipeline call (its batch key).
- Every later write by the worker is a compare-and-set on (id, attempt, lease owner, running):
  a worker whose lease was taken over can no longer change the job.
- A job ends (succeeded or failed) in the same transaction as its outbox row, so what a user is
  owed is never lost and never written twice (the outbox row is unique per job and target).
- Leases that run out are reaped: the job is queued again, or failed once its attempts are spent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import and_, case, func, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import raiseload

from storage import notify
from storage.results import JobResult
from storage.tables import Blob, Delivery, Job, JobOutput, JobStatus, utcnow


class LeaseLost(Exception):
    """The job is no longer ours: its lease ran out and it was reaped or claimed again."""


@dataclass(frozen=True)
class OutputRecord:
    index: int
    seed: int
    blob_key: str
    width: int
    height: int
    parameters: str
    size: int  # bytes of the blob
    safety_score: float | None = None  # the safety classifier's, where one is configured


# --- enqueue and read --------------------------------------------------------------------------


async def active_count(session: AsyncSession, user_id: int) -> int:
    query = select(func.count()).where(Job.user_id == user_id, Job.status.in_(JobStatus.ACTIVE))
    return (await session.execute(query)).scalar_one()


async def enqueue(
    session: AsyncSession,
    *,
    user_id: int,
    platform: str,
    chat_id: str,
    source_message_id: str | None,
    kind: str,
    model: str,
    batch_key: str,
    params: dict[str, Any],
    max_attempts: int,
    parent_id: int | None = None,
    parent_output_index: int | None = None,
    priority: int = 0,
) -> Job:
    job = Job(
        user_id=user_id,
        platform=platform,
        chat_id=chat_id,
        source_message_id=source_message_id,
        kind=kind,
        model=model,
        batch_key=batch_key,
        params=params,
        status=JobStatus.QUEUED,
        priority=priority,
        fair_round=await active_count(session, user_id),
        max_attempts=max_attempts,
        parent_id=parent_id,
        parent_output_index=parent_output_index,
    )
    session.add(job)
    await session.flush()
    await notify.jobs_queued(session)
    return job


async def record_answer(
    session: AsyncSession,
    *,
    user_id: int,
    platform: str,
    chat_id: str,
    source_message_id: str | None,
    kind: str,
    model: str,
    params: dict[str, Any],
    result: JobResult,
    parent_id: int | None = None,
) -> Job:
    """A job the command layer answered at once (`/describe` of an image that carries its
    settings): stored finished, with its result, so the buttons under the answer resolve
    through the message refs like any other job's. No delivery row: the answer is the reply."""
    now = utcnow()
    job = Job(
        user_id=user_id,
        platform=platform,
        chat_id=chat_id,
        source_message_id=source_message_id,
        kind=kind,
        model=model,
        batch_key="",
        params=params,
        status=JobStatus.SUCCEEDED,
        result=result.to_json(),
        max_attempts=0,
        parent_id=parent_id,
        started_at=now,
        finished_at=now,
        run_seconds=0.0,
    )
    session.add(job)
    await session.flush()
    return job


async def get(session: AsyncSession, job_id: int) -> Job | None:
    return await session.get(Job, job_id)


async def position(session: AsyncSession, job: Job) -> int:
    """1-based place of a queued job in claim order (0 when it is not queued)."""
    if job.status != JobStatus.QUEUED:
        return 0
    ahead = or_(
        Job.priority > job.priority,
        and_(
            Job.priority == job.priority,
            or_(Job.fair_round < job.fair_round, and_(Job.fair_round == job.fair_round, Job.id < job.id)),
        ),
    )
    query = select(func.count()).where(Job.status == JobStatus.QUEUED, ahead)
    return (await session.execute(query)).scalar_one() + 1


async def running(session: AsyncSession) -> list[Job]:
    query = select(Job).where(Job.status == JobStatus.RUNNING).order_by(Job.started_at)
    return list((await session.execute(query)).scalars())


async def user_jobs(session: AsyncSession, user_id: int, limit: int, statuses: tuple[str, ...] | None = None) -> list[Job]:
    query = select(Job).where(Job.user_id == user_id)
    if statuses:
        query = query.where(Job.status.in_(statuses))
    query = query.order_by(Job.id.desc()).limit(limit)
    return list((await session.execute(query)).scalars())


async def queued_count(session: AsyncSession) -> int:
    return (await session.execute(select(func.count()).where(Job.status == JobStatus.QUEUED))).scalar_one()


async def active_on_platform(session: AsyncSession, platform: str) -> int:
    query = select(func.count()).where(Job.platform == platform, Job.status.in_(JobStatus.ACTIVE))
    return (await session.execute(query)).scalar_one()


async def record_blob(session: AsyncSession, key: str, size: int, content_type: str, width: int | None, height: int | None) -> None:
    if await session.get(Blob, key) is None:
        session.add(Blob(key=key, size=size, content_type=content_type, width=width, height=height))
        await session.flush()


# --- the worker's side -------------------------------------------------------------------------


async def claim(
    session: AsyncSession,
    owner: str,
    lease_seconds: float,
    *,
    prefer_model: str | None = None,
    limit: int = 1,
    skip_kinds: tuple[str, ...] = (),
    models: tuple[str, ...] = (),
    affinity_seconds: float = 0.0,
) -> list[Job]:
    """Take up to `limit` queued jobs for `owner`, in claim order: priority (drawing before
    training), then jobs that have waited `affinity_seconds` or more, then jobs for
    `prefer_model` (the one already loaded, so a worker does not swap models back and forth),
    then the owner's round (whoever has least waiting goes first) and age. The wait bound is what
    keeps affinity from starving a job for a model no worker has loaded: once it has waited that
    long it goes ahead of every younger job. `skip_kinds`: kinds not to take now (training outside
    its hours); `models`: only jobs for these models (`worker --models`)."""
    query = select(Job).options(raiseload(Job.outputs)).where(Job.status == JobStatus.QUEUED)  # a queued job has none: not loaded
    if skip_kinds:
        query = query.where(Job.kind.not_in(skip_kinds))
    if models:
        query = query.where(Job.model.in_(models))
    order: list[Any] = [Job.priority.desc()]
    if prefer_model is not None:
        if affinity_seconds > 0:
            waited_long = Job.created_at <= utcnow() - timedelta(seconds=affinity_seconds)
            order.append(case((waited_long, 0), else_=1))
        order.append(case((Job.model == prefer_model, 0), else_=1))
    query = query.order_by(*order, Job.fair_round, Job.id).limit(limit).with_for_update(skip_locked=True)
    jobs = list((await session.execute(query)).scalars())
    _lease(jobs, owner, lease_seconds)
    await session.flush()
    return jobs


async def claim_compatible(
    session: AsyncSession,
    leader: Job,
    owner: str,
    lease_seconds: float,
    *,
    max_jobs: int,
    max_images: int,
    taken_images: int | None = None,
) -> list[Job]:
    """More queued jobs that can share one pipeline call with `leader` (same `batch_key`), in
    claim order, while the batch holds at most `max_jobs` jobs and `max_images` images (each
    job's `--n`; `taken_images`: what the batch holds already, default the leader's). A job whose
    key is empty never shares a call."""
    if not leader.batch_key or max_jobs < 1:
        return []
    images = images_of(leader) if taken_images is None else taken_images
    query = (
        select(Job)
        .options(raiseload(Job.outputs))
        .where(Job.status == JobStatus.QUEUED, Job.batch_key == leader.batch_key, Job.model == leader.model)
        .order_by(Job.priority.desc(), Job.fair_round, Job.id)
        .limit(max_jobs)
        .with_for_update(skip_locked=True)
    )
    jobs = []
    for job in (await session.execute(query)).scalars():
        if images + images_of(job) > max_images:
            continue  # a smaller one further on may still fit
        images += images_of(job)
        jobs.append(job)
    _lease(jobs, owner, lease_seconds)
    await session.flush()
    return jobs


def images_of(job: Job) -> int:
    """The pictures a job draws (its `--n`): what a batch counts against SDBOT_MAX_BATCH_IMAGES."""
    return int((job.params or {}).get("n", 1))


def _lease(jobs: list[Job], owner: str, lease_seconds: float) -> None:
    now = utcnow()
    for job in jobs:
        job.status = JobStatus.RUNNING
        job.attempt += 1
        job.lease_owner = owner
        job.lease_expires_at = now + timedelta(seconds=lease_seconds)
        job.started_at = now
        job.progress_step = 0
        job.progress_total = 0
        job.progress_note = None
        job.progress_preview = None


async def waiting_besides(session: AsyncSession, kind: str) -> int:
    """Queued jobs of other kinds than `kind`: the drawing jobs a training run yields to."""
    query = select(func.count()).where(Job.status == JobStatus.QUEUED, Job.kind != kind)
    return (await session.execute(query)).scalar_one()


def _ours(job_id: int, attempt: int, owner: str):  # type: ignore[no-untyped-def]
    return and_(Job.id == job_id, Job.attempt == attempt, Job.lease_owner == owner, Job.status == JobStatus.RUNNING)


async def _cas(session: AsyncSession, job_id: int, attempt: int, owner: str, /, **values: Any) -> None:
    result = await session.execute(update(Job).where(_ours(job_id, attempt, owner)).values(**values))
    if result.rowcount != 1:
        raise LeaseLost(f"job {job_id} attempt {attempt} is no longer held by {owner}")


async def hold(session: AsyncSession, job_id: int, attempt: int, owner: str) -> None:
    """Fence a write beside the job row (a training checkpoint, a sample): in the same
    transaction, it lands only while this attempt still holds the job. Raises LeaseLost."""
    await _cas(session, job_id, attempt, owner, updated_at=utcnow())


async def heartbeat(
    session: AsyncSession,
    job_id: int,
    attempt: int,
    owner: str,
    lease_seconds: float,
    step: int,
    total: int,
    note: str | None = None,
    *,
    preview: bytes | None = None,
) -> Literal["ok", "cancel"]:
    """Renew the lease and store progress (and a new live preview, when given: None leaves the
    stored one). Raises LeaseLost; says "cancel" when a user asked."""
    await _cas(
        session,
        job_id,
        attempt,
        owner,
        lease_expires_at=utcnow() + timedelta(seconds=lease_seconds),
        progress_step=step,
        progress_total=total,
        progress_note=note,
        updated_at=utcnow(),
        **({"progress_preview": preview} if preview is not None else {}),
    )
    cancel = (await session.execute(select(Job.cancel_requested).where(Job.id == job_id))).scalar_one()
    return "cancel" if cancel else "ok"


async def complete(
    session: AsyncSession,
    job: Job,
    attempt: int,
    owner: str,
    outputs: list[OutputRecord],
    run_seconds: float,
    result: JobResult | None = None,
) -> None:
    """Mark the job succeeded, store its outputs (images) and result (a text job's answer; a
    picture job's control maps, a clip's MP4 and GIF; a training run's outcome) and owe it to
    its chat, atomically. The blobs the result names are recorded with the outputs'."""
    now = utcnow()
    await _cas(
        session,
        job.id,
        attempt,
        owner,
        status=JobStatus.SUCCEEDED,
        finished_at=now,
        updated_at=now,
        lease_owner=None,
        lease_expires_at=None,
        progress_preview=None,
        run_seconds=run_seconds,
        gpu_seconds=run_seconds if job.kind != "train" else None,  # training has its own step budget
        error=None,
        result=result.to_json() if result is not None else None,
    )
    if result is not None:
        for picture in result.maps:  # the control maps beside a picture job's outputs
            await record_blob(session, picture.blob, picture.size, "image/png", picture.width, picture.height)
        if (grid := result.grid) is not None:  # a /compare's labelled grid of its cells (the outputs)
            await record_blob(session, grid.blob, grid.size, "image/png", grid.width, grid.height)
        if (clip := result.clip) is not None:  # a clip's MP4 and GIF, made from its frames (the outputs)
            await record_blob(session, clip.mp4, clip.mp4_size, "video/mp4", clip.width, clip.height)
            await record_blob(session, clip.gif, clip.gif_size, "image/gif", clip.width, clip.height)
    for out in outputs:
        await record_blob(session, out.blob_key, out.size, "image/png", out.width, out.height)
        session.add(_output_row(job.id, out))
    session.add(Delivery(job_id=job.id, platform=job.platform, chat_id=job.chat_id, kind="result"))
    await session.flush()


async def complete_batch(
    session: AsyncSession,
    held: list[tuple[Job, int]],
    owner: str,
    outputs: dict[int, list[OutputRecord]],
    run_seconds: float,
) -> set[int]:
    """Complete the jobs of one batch (each `(job, attempt)`) at once: one compare-and-set UPDATE
    for them all, each on its own attempt, then the outputs and outbox rows of those still ours,
    in one flush. Returns their ids; a job left out had lost its lease, and nothing of it was
    written. (Per job, `complete` would cost three round trips to the database; a batch of eight
    took most of a worker's time on a fast engine.)"""
    if not held:
        return set()
    now = utcnow()
    pairs = [(job.id, attempt) for job, attempt in held]
    # Each job is charged its share of the call by images (the GPU-seconds quota): together the
    # batch's owners pay its drawing time once, and a job costs what it would alone, or less.
    images = {job.id: images_of(job) for job, _ in held}
    share = case({job_id: run_seconds * count / sum(images.values()) for job_id, count in images.items()}, value=Job.id)
    statement = (
        update(Job)
        .where(tuple_(Job.id, Job.attempt).in_(pairs), Job.lease_owner == owner, Job.status == JobStatus.RUNNING)
        .values(
            status=JobStatus.SUCCEEDED,
            finished_at=now,
            updated_at=now,
            lease_owner=None,
            lease_expires_at=None,
            progress_preview=None,
            run_seconds=run_seconds,
            gpu_seconds=share,
            error=None,
            result=None,
        )
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    )
    ours = set((await session.execute(statement)).scalars())
    records = [out for job, _ in held if job.id in ours for out in outputs.get(job.id, [])]
    keys = {out.blob_key for out in records}
    known = set((await session.execute(select(Blob.key).where(Blob.key.in_(keys)))).scalars()) if keys else set()
    for out in records:
        if out.blob_key not in known:
            known.add(out.blob_key)
            session.add(Blob(key=out.blob_key, size=out.size, content_type="image/png", width=out.width, height=out.height))
    for job, _ in held:
        if job.id not in ours:
            continue
        for out in outputs.get(job.id, []):
            session.add(_output_row(job.id, out))
        session.add(Delivery(job_id=job.id, platform=job.platform, chat_id=job.chat_id, kind="result"))
    await session.flush()
    return ours


def _output_row(job_id: int, out: OutputRecord) -> JobOutput:
    return JobOutput(
        job_id=job_id,
        index=out.index,
        seed=out.seed,
        blob_key=out.blob_key,
        width=out.width,
        height=out.height,
        parameters=out.parameters,
        safety_score=out.safety_score,
    )


async def fail(session: AsyncSession, job: Job, attempt: int, owner: str, error: str, run_seconds: float | None = None) -> None:
    """End the job as failed and owe its owner a message saying why. It is not charged: the time
    it ran (`run_seconds`, where measured) shows on /me as refunded."""
    now = utcnow()
    await _cas(
        session,
        job.id,
        attempt,
        owner,
        status=JobStatus.FAILED,
        error=error,
        finished_at=now,
        updated_at=now,
        lease_owner=None,
        lease_expires_at=None,
        progress_preview=None,
        run_seconds=run_seconds,
        gpu_seconds=None,
    )
    session.add(Delivery(job_id=job.id, platform=job.platform, chat_id=job.chat_id, kind="failure"))
    await session.flush()


async def retry_or_fail(session: AsyncSession, job: Job, attempt: int, owner: str, error: str, run_seconds: float | None = None) -> str:
    """After an unexpected error: queue the job again, or fail it when its attempts are spent."""
    if attempt >= job.max_attempts:
        await fail(session, job, attempt, owner, error, run_seconds)
        return JobStatus.FAILED
    await _cas(
        session,
        job.id,
        attempt,
        owner,
        status=JobStatus.QUEUED,
        error=error,
        lease_owner=None,
        lease_expires_at=None,
        progress_preview=None,
        updated_at=utcnow(),
    )
    await notify.jobs_queued(session)
    return JobStatus.QUEUED


async def finish_cancelled(session: AsyncSession, job: Job, attempt: int, owner: str) -> None:
    now = utcnow()
    await _cas(
        session,
        job.id,
        attempt,
        owner,
        status=JobStatus.CANCELLED,
        finished_at=now,
        updated_at=now,
        lease_owner=None,
        lease_expires_at=None,
        progress_preview=None,
    )


async def release(session: AsyncSession, job: Job, attempt: int, owner: str) -> None:
    """Hand a job back untouched (the worker is shutting down): queued again, this attempt not counted."""
    await _cas(
        session,
        job.id,
        attempt,
        owner,
        status=JobStatus.QUEUED,
        attempt=attempt - 1,
        lease_owner=None,
        lease_expires_at=None,
        progress_preview=None,
        updated_at=utcnow(),
    )
    await notify.jobs_queued(session)


async def request_cancel(session: AsyncSession, job: Job) -> Literal["cancelled", "requested", "finished"]:
    """Cancel a queued job now; ask a running one to stop at its next step."""
    if job.status == JobStatus.QUEUED:
        result = await session.execute(
            update(Job)
            .where(Job.id == job.id, Job.status == JobStatus.QUEUED)
            .values(status=JobStatus.CANCELLED, finished_at=utcnow(), updated_at=utcnow())
        )
        if result.rowcount == 1:
            await session.refresh(job)
            return "cancelled"
        await session.refresh(job)
    if job.status == JobStatus.RUNNING:
        job.cancel_requested = True
        await session.flush()
        return "requested"
    return "finished"


async def reap_expired(session: AsyncSession, now: datetime | None = None, *, owners: list[str] | None = None) -> list[Job]:
    """Running jobs whose lease ran out (or whose owner is known to be dead): queue them again,
    fail them when their attempts are spent, or finish them as cancelled when a user asked."""
    now = now or utcnow()
    query = select(Job).where(Job.status == JobStatus.RUNNING)
    if owners is not None:
        query = query.where(Job.lease_owner.in_(owners))
    else:
        query = query.where(Job.lease_expires_at < now)
    jobs = list((await session.execute(query.with_for_update(skip_locked=True))).scalars())
    for job in jobs:
        job.lease_owner = None
        job.lease_expires_at = None
        job.progress_preview = None
        job.updated_at = now
        if job.cancel_requested:
            job.status = JobStatus.CANCELLED
            job.finished_at = now
        elif job.attempt >= job.max_attempts:
            job.status = JobStatus.FAILED
            job.finished_at = now
            job.error = (
                f"the worker stopped while drawing this, {job.attempt} times in a row, so I gave up. "
                "Try again with fewer steps or a smaller size; if it keeps happening, tell an admin."
            )
            session.add(Delivery(job_id=job.id, platform=job.platform, chat_id=job.chat_id, kind="failure"))
        else:
            job.status = JobStatus.QUEUED
    await session.flush()
    if any(job.status == JobStatus.QUEUED for job in jobs):
        await notify.jobs_queued(session)
    return jobs


async def running_owners(session: AsyncSession) -> list[str]:
    query = select(Job.lease_owner).where(Job.status == JobStatus.RUNNING, Job.lease_owner.is_not(None)).distinct()
    return [owner for owner in (await session.execute(query)).scalars() if owner]
