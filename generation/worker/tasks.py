"""What the worker runs: the `Task` protocol every kind of work satisfies, and the picture tasks.

A task is one claimed job (or one batch of them) made runnable. The worker (generation.worker.loop)
calls its four methods in this order, on these threads:

1. `describe()`, on the event loop: a line for the log ("txt2img 512x512 x4, 30 steps").
2. `await prepare()`, on the event loop: what must be read before the engine starts (a training
   run's checkpoint and captions); the heartbeat already renews the lease meanwhile.
3. `work(progress, stopping, should_yield)`, on the one engine thread (torch never runs on the
   event loop), while the heartbeat renews the lease. It calls `progress(step, total[, note])`
   as it goes, checks `stopping()` between steps, and returns what it made. It may raise:
   - `JobCancelled`, once `stopping()` said anything but "": "cancel" (the person asked: the job
     ends cancelled), "shutdown" (our own stop: handed back, its attempt not counted) or "lost"
     (the lease is someone else's: nothing more is written);
   - `TrainingYielded`, once `should_yield()` said so (a training run only: handed back, its
     attempt not counted, behind the drawing jobs that wait);
   - `LeaseLost`, from a write fenced on the attempt (a training run's checkpoints and samples);
   - `EngineUserError`: the job fails with its message, not retried;
   - any other exception: an internal error, retried until the job's `max_attempts` (a batch's
     jobs are drawn one by one instead).
4. `await finish(produced, run_seconds)`, on the event loop, the heartbeat stopped: write what
   `work` returned and complete the job (its outbox row in the same transaction). It may raise
   `LeaseLost` (the job is left alone) and, like `work`, `EngineUserError` or another error.
   In the worker's loop (`SDBOT_OVERLAP_OUTPUTS`, on by default) `finish` runs while the engine
   thread already draws the next job, so it must not use the engine thread; the job is still not
   completed until `finish` has stored its outputs.

The picture tasks draw in `work` and leave the rest to `finish`: the PNGs are encoded, scored by
the safety classifier and written to the blob store (fsync) on a thread of their own
(`generation.jobs.encoded`, `scored`, `outputs.store`), then the job is completed.

The tasks here are a picture or text job (`PictureTask`) and a batch of compatible txt2img jobs
(`BatchTask`); a training run is `generation.training.run.TrainingTask`, which satisfies the same
protocol without importing it (tests/test_worker_tasks.py checks all three).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

from generation.spec import TEXT_KINDS, GenerationSpec
from generation.worker.outputs import store
from storage import queue
from storage.blobs import BlobStore
from storage.db import Database
from storage.queue import LeaseLost, OutputRecord
from storage.results import JobResult
from storage.tables import Job

if TYPE_CHECKING:
    from generation.engine import Engine
    from generation.jobs import Rendered
    from generation.training.hooks import Stopping

log = logging.getLogger(__package__)  # "generation.worker", as before the worker was a package

Produced = TypeVar("Produced")


class ProgressFn(Protocol):
    """What `Task.work` reports progress with (from the engine thread): the step reached, the
    steps in all, and a line beside them (a training run's loss and time left). A picture task
    calls it with two arguments, a training run with three."""

    def __call__(self, step: int, total: int, note: str | None = None, /) -> None: ...


@runtime_checkable
class Task(Protocol[Produced]):
    """One claimed job, or one batch of them, as the worker runs it; `Produced` is what `work`
    hands to `finish`. The module's docstring says which thread runs each method and what each
    may raise."""

    def describe(self) -> str: ...

    async def prepare(self) -> None: ...

    def work(self, progress: ProgressFn, stopping: Callable[[], Stopping], should_yield: Callable[[], bool]) -> Produced: ...

    async def finish(self, produced: Produced, run_seconds: float) -> None: ...


class TaskHost(Protocol):
    """What a picture task uses of the worker that runs it (generation.worker.loop.Worker): named
    here so the tasks need not import the loop that imports them."""

    db: Database
    engine: Engine
    blobs: BlobStore
    owner: str


@dataclass
class Held:
    """A claimed job of the task now running, and what happened to it meanwhile (the heartbeat
    marks it): its lease taken over (`lost`) or a /cancel from its owner (`cancelled`). In a
    batch the others go on."""

    job: Job
    attempt: int
    lost: bool = False
    cancelled: bool = False


class PictureTask:
    """A picture or text job: the engine draws (or answers) in its thread; the PNGs become blobs
    and the job is completed with its outputs, its result and its outbox row."""

    def __init__(self, worker: TaskHost, job: Job, spec: GenerationSpec):
        self.worker, self.job, self.spec = worker, job, spec

    def describe(self) -> str:
        spec = self.spec
        return f"{spec.kind} {spec.width}x{spec.height} x{spec.n}, {spec.steps} steps"

    async def prepare(self) -> None:
        pass

    def work(
        self, progress: Callable[[int, int], None], stopping: Callable[[], str], should_yield: Callable[[], bool]
    ) -> Rendered | JobResult:
        """A picture job's rendering (its pictures not yet encoded: `finish` does it), or a text
        job's answer."""
        # torch: imported on a real engine's first job (see generation/worker/__init__.py)
        from generation.jobs import answer_job, render_job

        engine, should_stop = self.worker.engine, lambda: bool(stopping())
        if self.spec.kind in TEXT_KINDS:
            return JobResult.from_json(answer_job(engine, self.spec, job_id=self.job.id, on_progress=progress, should_stop=should_stop))
        return render_job(engine, self.spec, job_id=self.job.id, on_progress=progress, should_stop=should_stop, defer_png=True)

    async def finish(self, produced: Rendered | JobResult, run_seconds: float) -> None:
        if isinstance(produced, JobResult):  # a text job's answer
            outputs, result = [], produced
        else:
            outputs, result = await asyncio.to_thread(settle, self.worker.engine, self.worker.blobs, produced)
        async with self.worker.db.transaction() as session:
            await queue.complete(
                session, self.job, self.job.attempt, owner=self.worker.owner, outputs=outputs, run_seconds=run_seconds, result=result
            )


def settle(engine: Engine, blobs: BlobStore, rendered: Rendered) -> tuple[list[OutputRecord], JobResult | None]:
    """What `work` drew, made into the job's files, off the engine thread: the PNGs encoded, each
    scored by the safety classifier (where one is configured), then stored (`outputs.store`)."""
    if rendered.images:  # torch: imported only where pictures were drawn
        from generation.jobs import encoded, scored

        rendered = scored(engine, encoded(rendered))
    return store(blobs, rendered)


class BatchTask:
    """Several people's compatible txt2img jobs (one batch key) drawn in one pipeline call
    (generation.jobs.batched), then completed one by one, each with its own compare-and-set: a
    job whose lease was lost meanwhile is left alone, one cancelled meanwhile ends cancelled, and
    neither holds back the others."""

    def __init__(self, worker: TaskHost, held: list[Held], specs: list[GenerationSpec]):
        self.worker, self.held, self.specs = worker, held, specs

    def describe(self) -> str:
        spec = self.specs[0]
        images = sum(one.n for one in self.specs)
        return f"batch of {len(self.specs)} txt2img jobs ({images} images) {spec.width}x{spec.height}, {spec.steps} steps"

    async def prepare(self) -> None:
        pass

    def work(self, progress: Callable[[int, int], None], stopping: Callable[[], str], should_yield: Callable[[], bool]) -> list[Rendered]:
        """Each job's rendering, in the order of `held` (its pictures not yet encoded)."""
        from generation.jobs.batched import render_batch

        ids: list[int | None] = [held.job.id for held in self.held]
        return render_batch(self.worker.engine, self.specs, ids, on_progress=progress, should_stop=lambda: bool(stopping()), defer_png=True)

    async def finish(self, produced: list[Rendered], run_seconds: float) -> None:
        ours = []
        for held, rendered in zip(self.held, produced, strict=True):
            if held.lost:
                log.warning("job %s: lease lost during its batch; its pictures are dropped", held.job.id)
            else:
                ours.append((held, rendered))
        blobs, engine = self.worker.blobs, self.worker.engine
        stored = await asyncio.to_thread(lambda: [None if held.cancelled else settle(engine, blobs, r) for held, r in ours])
        drawn = [(held, records) for (held, _), records in zip(ours, stored, strict=True) if records is not None]
        async with self.worker.db.transaction() as session:  # one commit for the whole batch
            for held, _ in ours:
                if held.cancelled:
                    with contextlib.suppress(LeaseLost):
                        await queue.finish_cancelled(session, held.job, held.attempt, self.worker.owner)
            outputs = {held.job.id: records[0] for held, records in drawn}  # a batch job has no maps or clip: no result
            completed = await queue.complete_batch(
                session, [(held.job, held.attempt) for held, _ in drawn], self.worker.owner, outputs, run_seconds
            )
        for held, _ in drawn:
            if held.job.id not in completed:
                log.warning("job %s: lease lost before it could be completed", held.job.id)
