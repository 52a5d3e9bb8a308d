"""The worker: claims jobs from the queue and runs them on the engine, one at a time per GPU.

Like an arq worker: a small context, plain async functions, explicit limits. For each job:
- claim it (lease + attempt counter), preferring the model already loaded;
- run the engine in the one engine thread (torch never runs on the event loop);
- meanwhile heartbeat: renew the lease and store progress every `progress_seconds`, and pass a
  user's /cancel (or our own shutdown) to the engine, which stops between steps;
- write the PNGs to the blob store, then complete the job with a compare-and-set on its attempt,
  in one transaction with its outbox row.

A training run (kind "train", `generation.training.run.TrainingTask`) goes the same way, with
two differences: it writes checkpoints and samples while it runs (each fenced on its attempt),
and it yields: when drawing jobs wait, it checkpoints at its next step and is handed back to the
queue, attempt not counted, behind them.

A worker that dies mid-job is harmless: its lease runs out and the job runs again (up to
`max_attempts`). On start, jobs leased by dead processes on this host are taken back at once,
rather than after their lease, so a restart after a crash resumes without waiting.

This module loads no torch: the engine, the job kinds and the trainer are imported where a job
runs on them (and only for types otherwise), so a worker around another engine (tests/support/null_worker.py)
starts in about a second, and the process that builds the real engine pays for torch once there.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PIL import Image

from config.logs import job_scope, run_in_context
from config.models import ModelRegistry
from config.settings import Settings, training_hours_open
from generation.errors import EngineUserError, JobCancelled, TrainingYielded
from generation.spec import TEXT_KINDS, GenerationSpec
from storage import model_library, notify, queue, workers
from storage.blobs import BlobStore
from storage.db import Database
from storage.queue import LeaseLost, OutputRecord
from storage.tables import Job

if TYPE_CHECKING:
    from generation.engine import Engine
    from generation.jobs import Rendered
    from generation.training.run import TrainingTask

log = logging.getLogger(__name__)


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
        )


def make_owner_id() -> str:
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


class _Progress:
    def __init__(self) -> None:
        self.step = 0
        self.total = 0
        self.note: str | None = None  # a line beside the step (a training run's loss and time left)

    def update(self, step: int, total: int, note: str | None = None) -> None:  # called from the engine thread
        self.step, self.total, self.note = step, total, note or None


class _PictureTask:
    """A picture or text job: the engine draws (or answers) in its thread; the PNGs become blobs
    and the job is completed with its outputs and outbox row."""

    def __init__(self, worker: Worker, job: Job, spec: GenerationSpec):
        self.worker, self.job, self.spec = worker, job, spec

    def describe(self) -> str:
        spec = self.spec
        return f"{spec.kind} {spec.width}x{spec.height} x{spec.n}, {spec.steps} steps"

    async def prepare(self) -> None:
        pass

    def work(self, progress: Callable[[int, int], None], stopping: Callable[[], str], should_yield: Callable[[], bool]) -> Any:
        # torch: imported on a real engine's first job (see the module's docstring)
        from generation.jobs import answer_job, render_job, scored

        engine, should_stop = self.worker.engine, lambda: bool(stopping())
        if self.spec.kind in TEXT_KINDS:
            return answer_job(engine, self.spec, job_id=self.job.id, on_progress=progress, should_stop=should_stop)
        return scored(engine, render_job(engine, self.spec, job_id=self.job.id, on_progress=progress, should_stop=should_stop))

    async def finish(self, produced: Any, run_seconds: float) -> None:
        if isinstance(produced, dict):  # a text job's answer
            outputs, result = [], produced
        else:
            outputs, result = await asyncio.to_thread(self.worker.store, produced)
        async with self.worker.db.transaction() as session:
            await queue.complete(
                session, self.job, self.job.attempt, owner=self.worker.owner, outputs=outputs, run_seconds=run_seconds, result=result
            )


@dataclass
class _Held:
    """A claimed job of the task now running, and what happened to it meanwhile: its lease taken
    over (`lost`) or a /cancel from its owner (`cancelled`). In a batch the others go on."""

    job: Job
    attempt: int
    lost: bool = False
    cancelled: bool = False


class _BatchTask:
    """Several people's compatible txt2img jobs (one batch key) drawn in one pipeline call
    (generation.jobs.batched), then completed one by one, each in its own transaction with its
    own compare-and-set: a job whose lease was lost meanwhile is left alone, one cancelled
    meanwhile ends cancelled, and neither holds back the others."""

    def __init__(self, worker: Worker, held: list[_Held], specs: list[GenerationSpec]):
        self.worker, self.held, self.specs = worker, held, specs

    def describe(self) -> str:
        spec = self.specs[0]
        images = sum(one.n for one in self.specs)
        return f"batch of {len(self.specs)} txt2img jobs ({images} images) {spec.width}x{spec.height}, {spec.steps} steps"

    async def prepare(self) -> None:
        pass

    def work(self, progress: Callable[[int, int], None], stopping: Callable[[], str], should_yield: Callable[[], bool]) -> Any:
        from generation.jobs import scored
        from generation.jobs.batched import render_batch

        ids: list[int | None] = [held.job.id for held in self.held]
        engine = self.worker.engine
        return [
            scored(engine, one) for one in render_batch(engine, self.specs, ids, on_progress=progress, should_stop=lambda: bool(stopping()))
        ]

    async def finish(self, produced: list[Rendered], run_seconds: float) -> None:
        ours = []
        for held, rendered in zip(self.held, produced, strict=True):
            if held.lost:
                log.warning("job %s: lease lost during its batch; its pictures are dropped", held.job.id)
            else:
                ours.append((held, rendered))
        stored = await asyncio.to_thread(lambda: [None if held.cancelled else self.worker.store(r) for held, r in ours])
        drawn = [(held, records) for (held, _), records in zip(ours, stored, strict=True) if records is not None]
        async with self.worker.db.transaction() as session:  # one commit for the whole batch
            for held, _ in ours:
                if held.cancelled:
                    with contextlib.suppress(LeaseLost):
                        await queue.finish_cancelled(session, held.job, held.attempt, self.worker.owner)
            outputs = {held.job.id: records[0] for held, records in drawn}
            completed = await queue.complete_batch(
                session, [(held.job, held.attempt) for held, _ in drawn], self.worker.owner, outputs, run_seconds
            )
        for held, _ in drawn:
            if held.job.id not in completed:
                log.warning("job %s: lease lost before it could be completed", held.job.id)


class Worker:
    def __init__(
        self,
        db: Database,
        engine: Engine,
        blobs: BlobStore,
        limits: WorkerLimits,
        *,
        on_finished: Callable[[], None] = lambda: None,
        owner: str | None = None,
        preload_model: str | None = None,
        registry: ModelRegistry | None = None,
        gpu: str | None = None,
    ):
        self.db = db
        self.gpu = gpu  # `worker --gpu N`, shown in /admin status
        self.engine = engine
        self.blobs = blobs
        self.limits = limits
        self.on_finished = on_finished
        self.owner = owner or make_owner_id()
        self.preload_model = preload_model
        self.registry = registry  # synced with the models admins add in chat before each job
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sdbot-engine")
        self._wake = asyncio.Event()
        self._shutdown = threading.Event()
        self._alive_at = time.monotonic()  # the loop's last turn or the running job's last heartbeat
        self._running: list[int] = []  # ids of the jobs the engine is on now

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set. A job in progress at stop is handed back to the queue."""
        await self.recover_dead_local_jobs()
        log.info("worker %s started", self.owner)
        if self.preload_model:
            self._preload(self.preload_model)
        stopper = asyncio.create_task(self._relay_stop(stop))
        listener = asyncio.create_task(notify.listen(self.db.url, self.wake, stop))  # PostgreSQL: jobs queued elsewhere
        announcer = asyncio.create_task(self._announce(stop))  # the roll call /admin status reads
        try:
            while not stop.is_set():
                self._alive_at = time.monotonic()
                try:
                    worked = await self.run_once()
                except Exception:  # e.g. the database stayed locked past its busy timeout
                    log.exception("worker %s: claiming failed; trying again shortly", self.owner)
                    worked = False
                if not worked:
                    self._wake.clear()
                    await _wait_any(stop, self._wake, timeout=self.limits.poll_seconds)
        finally:
            for task in (stopper, listener):  # the listener holds no transaction: cancelling it is safe
                task.cancel()
            await asyncio.gather(stopper, listener, announcer, return_exceptions=True)  # the announcer ends at stop
            with contextlib.suppress(Exception):  # a database gone at shutdown: the row ages out instead
                async with self.db.transaction() as session:
                    await workers.leave(session, self.owner)
            self.executor.shutdown(wait=True)
            log.info("worker %s stopped", self.owner)

    async def _announce(self, stop: asyncio.Event) -> None:
        """Renew this worker's row in the roll call every few seconds until `stop`."""
        while not stop.is_set():
            state = self.health()
            try:
                async with self.db.transaction() as session:
                    await workers.announce(
                        session,
                        self.owner,
                        host=socket.gethostname(),
                        gpu=self.gpu,
                        models=state["models"],
                        loaded_model=state["loaded_model"],
                        jobs=state["jobs"],
                    )
            except Exception:  # a locked or unreachable database: the next turn tries again
                log.warning("worker %s: could not renew its roll-call row", self.owner, exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), workers.ANNOUNCE_SECONDS)

    def _preload(self, model: str) -> None:
        """Load the default model now, in the engine thread (jobs queue behind it), so the first
        job is quick and a model that cannot load is reported at start, not at the first job."""

        def report(future) -> None:  # type: ignore[no-untyped-def]
            error = future.exception()
            if isinstance(error, EngineUserError):
                log.error("the default model cannot be loaded: %s", error.message)
            elif error is not None:
                log.error("preloading %s failed", model, exc_info=error)
            else:
                log.info("model %s is loaded", model)

        self.executor.submit(self.engine.preload, model).add_done_callback(report)

    async def _relay_stop(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._shutdown.set()  # the engine thread checks this between steps

    async def recover_dead_local_jobs(self) -> None:
        async with self.db.transaction() as session:
            dead = [owner for owner in await queue.running_owners(session) if owner_is_dead_here(owner)]
            if dead:
                jobs = await queue.reap_expired(session, owners=dead)
                log.warning("took back %d job(s) from dead worker(s) %s", len(jobs), ", ".join(dead))

    async def run_once(self) -> bool:
        """Claim and run one job, or one batch of compatible jobs. Returns False when the queue
        had nothing for us."""
        limits = self.limits
        skip = () if training_hours_open(limits.train_hours) else ("train",)
        async with self.db.transaction() as session:
            jobs = await queue.claim(
                session,
                self.owner,
                limits.lease_seconds,
                prefer_model=self.engine.loaded_model,
                skip_kinds=skip,
                models=limits.models,
                affinity_seconds=limits.affinity_seconds,
            )
            if jobs and limits.max_batch_jobs > 1:  # in the same transaction: the batch is claimed at once
                jobs += await queue.claim_compatible(
                    session,
                    jobs[0],
                    self.owner,
                    limits.lease_seconds,
                    max_jobs=limits.max_batch_jobs - 1,
                    max_images=limits.max_batch_images,
                )
            if jobs and self.registry is not None:
                # In the claim's transaction: a model added before the job was queued is seen.
                await model_library.sync(session, self.registry)
        if not jobs:
            return False
        jobs += await self._wait_for_batch(jobs)
        if len(jobs) == 1:
            await self.execute(jobs[0])
        else:
            await self.execute_batch(jobs)
        return True

    async def _wait_for_batch(self, jobs: list[Job]) -> list[Job]:
        """With SDBOT_BATCH_WAIT_MS, a batch that is not full waits that long, at most, for more
        compatible jobs (a job queued here or a NOTIFY wakes it early); 0 (the default): never."""
        limits = self.limits
        lead = jobs[0]
        if limits.batch_wait_ms <= 0 or limits.max_batch_jobs <= 1 or not lead.batch_key:
            return []
        more: list[Job] = []
        # never so long that the leases taken with the claim (not yet heartbeating) could run out
        deadline = time.monotonic() + min(limits.batch_wait_ms / 1000, limits.lease_seconds / 3)
        while len(jobs) + len(more) < limits.max_batch_jobs and (left := deadline - time.monotonic()) > 0:
            self._wake.clear()
            await _wait_any(self._wake, timeout=left)
            images = sum(queue.images_of(job) for job in (*jobs, *more))
            async with self.db.transaction() as session:
                more += await queue.claim_compatible(
                    session,
                    lead,
                    self.owner,
                    limits.lease_seconds,
                    max_jobs=limits.max_batch_jobs - len(jobs) - len(more),
                    max_images=limits.max_batch_images,
                    taken_images=images,
                )
        return more

    async def execute(self, job: Job) -> None:
        try:
            task = self._task(job)
        except ValueError as error:  # written by an incompatible version: running it again cannot help
            await self._end(queue.fail, job, job.attempt, f"its parameters could not be read ({error})"[:500])
            self.on_finished()
            return
        await self._run(task, [_Held(job, job.attempt)])

    async def execute_batch(self, jobs: list[Job]) -> None:
        """Jobs claimed together (one batch key): drawn in one call. Their keys are computed again
        from their parameters (a job queued by another version may carry an old key); a job
        that does not fit runs alone after the batch."""
        held: list[_Held] = []
        specs: list[GenerationSpec] = []
        for job in jobs:
            try:
                spec = GenerationSpec.model_validate(job.params)
            except ValueError as error:
                await self._end(queue.fail, job, job.attempt, f"its parameters could not be read ({error})"[:500])
                continue
            held.append(_Held(job, job.attempt))
            specs.append(spec)
        key = specs[0].batch_key() if specs else ""
        together = [i for i, spec in enumerate(specs) if key and spec.batch_key() == key]
        if len(together) >= 2:
            task = self._batch_task([held[i] for i in together], [specs[i] for i in together])
            await self._run(task, task.held)
        else:
            together = []
        for i, one in enumerate(held):
            if i not in together:
                await self.execute(one.job)

    async def _run(self, task: _PictureTask | _BatchTask | TrainingTask, held: list[_Held]) -> None:
        """Run a task on the engine thread while heartbeating its jobs, then end each of them as
        its outcome says: completed, failed, queued again, cancelled, or handed back. Every log
        line meanwhile (the heartbeat's and the engine thread's too) names the job, and its batch."""
        batch = tuple(one.job.id for one in held) if len(held) > 1 else ()
        with job_scope(held[0].job.id, held[0].attempt, batch):
            await self._run_in_scope(task, held)

    async def _run_in_scope(self, task: _PictureTask | _BatchTask | TrainingTask, held: list[_Held]) -> None:
        progress = _Progress()
        cancel = threading.Event()  # every job still ours was cancelled by its owner
        lease_lost = threading.Event()  # no job is ours any more
        wants_yield = threading.Event()  # a training run hands the worker to waiting drawing jobs
        beat_done = asyncio.Event()
        beat = asyncio.create_task(self._heartbeat(held, progress, cancel, lease_lost, beat_done, wants_yield))
        started = time.perf_counter()
        ids = ", ".join(str(one.job.id) for one in held)
        attempts = ", ".join(str(one.attempt) for one in held)
        log.info("job %s attempt %s: %s", ids, attempts, task.describe())
        outcome = "failed"
        self._running = [one.job.id for one in held]

        def stopping() -> str:
            return "lost" if lease_lost.is_set() else "cancel" if cancel.is_set() else "shutdown" if self._shutdown.is_set() else ""

        try:
            try:
                await task.prepare()
                produced = await asyncio.get_running_loop().run_in_executor(
                    self.executor, run_in_context(lambda: task.work(progress.update, stopping, wants_yield.is_set))
                )
            finally:
                # Stop the heartbeat between beats, never by cancelling it inside a transaction
                # (a transaction cancelled mid-flight and left pending hangs the loop's shutdown),
                # and before the job's last write, which it would otherwise race.
                beat_done.set()
                await beat
            await task.finish(produced, time.perf_counter() - started)
            outcome = "succeeded"
        except TrainingYielded:
            await self._end(queue.release, held[0].job, held[0].attempt)  # behind the drawing jobs; resumes later
            outcome = "yielded"
        except JobCancelled:
            outcome = await self._stopped(held, lease_lost, cancel)
        except LeaseLost:
            outcome = "lease lost"
        except Exception as error:
            if isinstance(task, _BatchTask):  # e.g. out of memory for the batch: each job alone decides
                log.warning("jobs %s: the batch failed (%s: %s); drawing them one by one", ids, type(error).__name__, error)
                self._running = []
                await self._alone(held)
                return
            [one] = held
            ran = time.perf_counter() - started
            if isinstance(error, EngineUserError):
                await self._end(queue.fail, one.job, one.attempt, error.message, ran)
            else:
                log.exception("job %s attempt %s failed", one.job.id, one.attempt)
                message = f"an internal error stopped it ({type(error).__name__}: {error})"[:500]
                outcome = await self._end(queue.retry_or_fail, one.job, one.attempt, message, ran) or outcome
        finally:
            self._running = []
        log.info("job %s attempt %s: %s in %.2f s", ids, attempts, outcome, time.perf_counter() - started)
        self.on_finished()

    async def _alone(self, held: list[_Held]) -> None:
        """After a batch failed: each job still ours runs alone, on the same attempt (its lease
        is still held), and ends as it would have alone; a job cancelled meanwhile ends so."""
        for one in held:
            if one.lost:
                continue
            if one.cancelled:
                await self._end(queue.finish_cancelled, one.job, one.attempt)
                continue
            await self._run(self._task(one.job), [_Held(one.job, one.attempt)])

    def _task(self, job: Job) -> _PictureTask | TrainingTask:
        """What running `job` means: a training run, or a picture / text job."""
        if job.kind == "train":
            from generation.training.run import TrainingTask

            loop = asyncio.get_running_loop()
            return TrainingTask(self.db, self.engine, self.blobs, job, job.attempt, self.owner, loop, self.on_finished)
        return _PictureTask(self, job, GenerationSpec.model_validate(job.params))

    def _batch_task(self, held: list[_Held], specs: list[GenerationSpec]) -> _BatchTask:
        return _BatchTask(self, held, specs)

    def _training_should_give_way(self, drawing_jobs_waiting: int) -> bool:
        """A run yields at its next step when drawing jobs wait (SDBOT_TRAIN_YIELD) or when its
        hours end (SDBOT_TRAIN_HOURS); it resumes from that checkpoint when it is claimed again."""
        return (self.limits.train_yield and drawing_jobs_waiting > 0) or not training_hours_open(self.limits.train_hours)

    async def _stopped(self, held: list[_Held], lease_lost: threading.Event, cancel: threading.Event) -> str:
        if lease_lost.is_set():
            return "lease lost"
        if cancel.is_set():  # every job still ours was cancelled
            for one in held:
                if not one.lost:
                    await self._end(queue.finish_cancelled, one.job, one.attempt)
            return "cancelled"
        for one in held:  # our own shutdown: back to the queue, attempt not counted
            if not one.lost:
                await self._end(queue.finish_cancelled if one.cancelled else queue.release, one.job, one.attempt)
        return "handed back"

    async def _end(self, action, job: Job, attempt: int, *args):  # type: ignore[no-untyped-def]
        try:
            async with self.db.transaction() as session:
                return await action(session, job, attempt, self.owner, *args)
        except LeaseLost:
            log.warning("job %s: lease lost before it could be closed", job.id)
            return None

    def store(self, rendered: Rendered) -> tuple[list[OutputRecord], dict[str, Any] | None]:
        """The pictures as blobs and output records; the control maps, and a clip's MP4 and GIF
        (commands.clip_source.clip_info reads them), as blobs in the result."""
        outputs = [
            OutputRecord(
                index=image.index,
                seed=image.seed,
                blob_key=self.blobs.put(image.png, "png"),
                width=image.width,
                height=image.height,
                parameters=image.parameters,
                size=len(image.png),
                safety_score=image.safety_score,
            )
            for image in rendered.images
        ]
        maps = []
        for png in rendered.maps:
            with Image.open(io.BytesIO(png)) as picture:
                width, height = picture.size
            maps.append({"blob": self.blobs.put(png, "png"), "width": width, "height": height, "size": len(png)})
        result: dict[str, Any] = {"maps": maps} if maps else {}
        if rendered.clip is not None:
            clip = rendered.clip
            result["clip"] = {
                "mp4": self.blobs.put(clip.mp4, "mp4"),
                "gif": self.blobs.put(clip.gif, "gif"),
                "fps": clip.fps,
                "width": clip.width,
                "height": clip.height,
                "frames": clip.frames,
                "loop": clip.loop,
                "mp4_size": len(clip.mp4),
                "gif_size": len(clip.gif),
            }
        return outputs, result or None

    async def _heartbeat(
        self,
        held: list[_Held],
        progress: _Progress,
        cancel: threading.Event,
        lease_lost: threading.Event,
        done: asyncio.Event,
        wants_yield: threading.Event,
    ) -> None:
        """Renew the leases of the task's jobs and store their progress every beat. A job whose
        lease is lost, or whose owner cancelled it, is marked; the task stops when no job is
        ours any more, or when every one still ours was cancelled."""
        interval = min(self.limits.progress_seconds, self.limits.lease_seconds / 3)
        training = held[0].job.kind == "train"
        while True:
            try:
                await asyncio.wait_for(done.wait(), interval)
                return
            except TimeoutError:
                pass
            self._alive_at = time.monotonic()
            try:
                async with self.db.transaction() as session:
                    for one in held:
                        if one.lost:
                            continue
                        try:
                            answer = await queue.heartbeat(
                                session,
                                one.job.id,
                                one.attempt,
                                self.owner,
                                self.limits.lease_seconds,
                                progress.step,
                                progress.total,
                                progress.note,
                            )
                        except LeaseLost:  # the UPDATE matched nothing: the transaction goes on for the rest
                            log.warning("job %s attempt %s: lease lost; stopping it", one.job.id, one.attempt)
                            one.lost = True
                            continue
                        one.cancelled = one.cancelled or answer == "cancel"
                    if training and self._training_should_give_way(await queue.waiting_besides(session, "train")):
                        wants_yield.set()
            except Exception:
                log.exception("jobs %s: heartbeat failed; retrying", [one.job.id for one in held])
                continue
            ours = [one for one in held if not one.lost]
            if not ours:
                lease_lost.set()
                return
            if all(one.cancelled for one in ours):
                cancel.set()

    def health(self) -> dict[str, Any]:
        """For /healthz and /admin status: who this worker is, what it holds, and whether its loop
        (or the heartbeat of the job it runs) has been seen lately."""
        age = time.monotonic() - self._alive_at
        return {
            "ok": age < max(self.limits.lease_seconds, 3 * self.limits.poll_seconds),
            "owner": self.owner,
            "gpu": self.gpu,
            "models": list(self.limits.models),
            "loaded_model": self.engine.loaded_model,
            "jobs": list(self._running),
            "last_loop_age_s": round(age, 3),
        }


async def _wait_any(*events_and_timeout: asyncio.Event, timeout: float) -> None:
    waiters = [asyncio.create_task(event.wait()) for event in events_and_timeout]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
