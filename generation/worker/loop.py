"""The worker: the claim loop, the batch wait, and running each task to its outcome.

`Worker.run` claims until stopped (woken early by a job queued here or a PostgreSQL NOTIFY),
announces itself in the roll call /admin status reads, and on start takes back the jobs of dead
processes on this host. `run_once` claims one job, or a batch of compatible ones in the same
transaction; `_run` runs the task on the engine thread under its heartbeat
(generation.worker.heartbeat) and ends each of its jobs as the outcome says: completed (by the
task's `finish`), failed, queued again, cancelled, or handed back.

Overlap (`SDBOT_OVERLAP_OUTPUTS`, on by default; the loop of `run` only): once the engine thread
has drawn a job, its `finish` (PNG encoding, safety scores, blob writes with fsync, the
completion's compare-and-set) goes on in the background while the loop claims and draws the next
job, so the GPU does not wait on them. At most one job's outputs are in flight: a job that has
drawn waits for the previous one's `finish` before its own starts. Nothing changes about when a
job is done: it is completed only once its outputs are stored, so a crash in between leaves it
running under a lease that runs out, and it is drawn again (tests/test_crash_overlap.py).
`run_once` called on its own (tests, benches) ends its job before it returns, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any

from config.logs import job_scope, run_in_context
from config.models import ModelRegistry
from generation.errors import EngineUserError, JobCancelled, TrainingYielded
from generation.spec import GenerationSpec
from generation.worker.heartbeat import Heartbeat, relay_stop, with_previews
from generation.worker.limits import WorkerLimits, make_owner_id, owner_is_dead_here
from generation.worker.tasks import BatchTask, Held, PictureTask, Task
from storage import model_library, notify, queue, workers
from storage.blobs import BlobStore
from storage.db import Database
from storage.queue import LeaseLost
from storage.tables import Job

if TYPE_CHECKING:
    from generation.engine import Engine

log = logging.getLogger(__package__)  # "generation.worker", as before the worker was a package


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
        self._shutdown = threading.Event()  # set at stop; the engine thread checks it between steps
        self._alive_at = time.monotonic()  # the loop's last turn or the running job's last heartbeat
        self._running: list[int] = []  # ids of the jobs the engine is on now
        self._overlap = False  # set by `run` from SDBOT_OVERLAP_OUTPUTS: finish a job while the next one draws
        self._finishing: asyncio.Task[None] | None = None  # the drawn job whose outputs are being finished
        self._finishing_ids: list[int] = []

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set. A job in progress at stop is handed back to the queue."""
        await self.recover_dead_local_jobs()
        log.info("worker %s started", self.owner)
        if self.preload_model:
            self._preload(self.preload_model)
        stopper = asyncio.create_task(relay_stop(stop, self._shutdown))
        listener = asyncio.create_task(notify.listen(self.db.url, self.wake, stop))  # PostgreSQL: jobs queued elsewhere
        announcer = asyncio.create_task(self._announce(stop))  # the roll call /admin status reads
        self._overlap = self.limits.overlap_outputs
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
            self._overlap = False
            await self.settle()  # the last drawn job is completed before the worker leaves
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

    async def recover_dead_local_jobs(self) -> None:
        async with self.db.transaction() as session:
            dead = [owner for owner in await queue.running_owners(session) if owner_is_dead_here(owner)]
            if dead:
                jobs = await queue.reap_expired(session, owners=dead)
                log.warning("took back %d job(s) from dead worker(s) %s", len(jobs), ", ".join(dead))

    # --- claiming ------------------------------------------------------------------------------

    async def run_once(self) -> bool:
        """Claim and run one job, or one batch of compatible jobs. Returns False when the queue
        had nothing for us."""
        limits = self.limits
        async with self.db.transaction() as session:
            jobs = await queue.claim(
                session,
                self.owner,
                limits.lease_seconds,
                prefer_model=self.engine.loaded_model,
                skip_kinds=limits.skipped_kinds(),
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

    # --- running -------------------------------------------------------------------------------

    async def execute(self, job: Job) -> None:
        try:
            task = self._task(job)
        except ValueError as error:  # written by an incompatible version: running it again cannot help
            await self._end(queue.fail, job, job.attempt, f"its parameters could not be read ({error})"[:500])
            self.on_finished()
            return
        await self._run(task, [Held(job, job.attempt)])

    async def execute_batch(self, jobs: list[Job]) -> None:
        """Jobs claimed together (one batch key): drawn in one call. Their keys are computed again
        from their parameters (a job queued by another version may carry an old key); a job
        that does not fit runs alone after the batch."""
        held: list[Held] = []
        specs: list[GenerationSpec] = []
        for job in jobs:
            try:
                spec = GenerationSpec.model_validate(job.params)
            except ValueError as error:
                await self._end(queue.fail, job, job.attempt, f"its parameters could not be read ({error})"[:500])
                continue
            held.append(Held(job, job.attempt))
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

    def _task(self, job: Job) -> Task[Any]:
        """What running `job` means: a training run, or a picture / text job. Raises ValueError
        when its parameters cannot be read."""
        if job.kind == "train":
            from generation.training.run import TrainingTask  # torch: only where a run is claimed

            loop = asyncio.get_running_loop()
            return TrainingTask(self.db, self.engine, self.blobs, job, job.attempt, self.owner, loop, self.on_finished)
        return PictureTask(self, job, GenerationSpec.model_validate(job.params))

    def _batch_task(self, held: list[Held], specs: list[GenerationSpec]) -> BatchTask:
        return BatchTask(self, held, specs)

    async def _run(self, task: Task[Any], held: list[Held]) -> None:
        """Run a task on the engine thread while heartbeating its jobs, then end each of them as
        its outcome says: completed, failed, queued again, cancelled, or handed back. Every log
        line meanwhile (the heartbeat's and the engine thread's too) names the job, and its batch."""
        batch = tuple(one.job.id for one in held) if len(held) > 1 else ()
        with job_scope(held[0].job.id, held[0].attempt, batch):  # copied into the background `_close` too
            await self._run_in_scope(task, held)

    async def _run_in_scope(self, task: Task[Any], held: list[Held]) -> None:
        """Draw on the engine thread under the heartbeat, then close the task (`_close`): here, or
        with the overlap in the background while the next job draws."""
        beat = Heartbeat(self.db, self.owner, self.limits, held, self._shutdown, on_beat=self._seen_alive)
        beat.start()
        started = time.perf_counter()
        log.info("job %s attempt %s: %s", _ids(held), _attempts(held), task.describe())
        self._running = [one.job.id for one in held]
        try:
            try:
                await task.prepare()
                work: Callable[[], Any] = partial(task.work, beat.progress.update, beat.stopping, beat.wants_yield.is_set)
                if isinstance(task, (PictureTask, BatchTask)):  # pictures show live previews; training runs send samples
                    work = partial(with_previews, self.engine, beat.progress.show, work)
                produced = await asyncio.get_running_loop().run_in_executor(self.executor, run_in_context(work))
            finally:
                # Stop the heartbeat between beats, never by cancelling it inside a transaction
                # (a transaction cancelled mid-flight and left pending hangs the loop's shutdown),
                # and before the job's last write, which it would otherwise race.
                await beat.stop()
                self._running = []
        except Exception as error:
            await self._close(task, held, beat, started, error=error)
            return
        ran = time.perf_counter() - started
        if not self._overlap or held[0].job.kind == "train":  # a training run's end is written at once
            await self._close(task, held, beat, started, produced=produced, ran=ran)
            return
        await self.settle()  # at most one job's outputs in flight: the previous job's first
        self._finishing_ids = [one.job.id for one in held]
        self._finishing = asyncio.create_task(self._close(task, held, beat, started, produced=produced, ran=ran, background=True))

    async def settle(self) -> None:
        """Wait until the job whose outputs are being finished in the background (the overlap)
        has ended; at once when there is none."""
        finishing, self._finishing = self._finishing, None
        if finishing is None:
            return
        try:
            await finishing
        except Exception:  # `_close` ends every outcome itself; what escapes it (the database gone) is logged
            log.exception("jobs %s: closing failed; their leases run out and they are drawn again", self._finishing_ids)
        finally:
            self._finishing_ids = []

    async def _close(
        self,
        task: Task[Any],
        held: list[Held],
        beat: Heartbeat,
        started: float,
        *,
        produced: Any = None,
        ran: float = 0.0,
        error: Exception | None = None,
        background: bool = False,
    ) -> None:
        """End the task's jobs: `finish` what `work` produced (its outputs stored, then the job
        completed), or end them as `error` (raised by `work`) or an error of `finish` says.
        `background`: the overlap runs this while the next job draws, so a batch whose `finish`
        failed is not drawn again here (that would take the engine thread): its jobs are queued
        again, as after any internal error."""
        ids, attempts = _ids(held), _attempts(held)
        outcome = "failed"
        try:
            if error is not None:
                raise error
            await task.finish(produced, ran)
            outcome = "succeeded"
        except TrainingYielded:
            await self._end(queue.release, held[0].job, held[0].attempt)  # behind the drawing jobs; resumes later
            outcome = "yielded"
        except JobCancelled:
            outcome = await self._stopped(held, beat)
        except LeaseLost:
            outcome = "lease lost"
        except Exception as error:
            if isinstance(task, BatchTask) and background:  # its pictures were drawn; storing or completing failed
                log.exception("jobs %s: finishing the batch failed", ids)
                message = f"an internal error stopped it ({type(error).__name__}: {error})"[:500]
                ran = time.perf_counter() - started
                for one in held:
                    if not one.lost:
                        await self._end(queue.retry_or_fail, one.job, one.attempt, message, ran)
                log.info("job %s attempt %s: %s in %.2f s", ids, attempts, outcome, time.perf_counter() - started)
                self.on_finished()
                return
            if isinstance(task, BatchTask):  # e.g. out of memory for the batch: each job alone decides
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
        log.info("job %s attempt %s: %s in %.2f s", ids, attempts, outcome, time.perf_counter() - started)
        self.on_finished()

    def _seen_alive(self) -> None:
        self._alive_at = time.monotonic()

    async def _alone(self, held: list[Held]) -> None:
        """After a batch failed: each job still ours runs alone, on the same attempt (its lease
        is still held), and ends as it would have alone; a job cancelled meanwhile ends so."""
        for one in held:
            if one.lost:
                continue
            if one.cancelled:
                await self._end(queue.finish_cancelled, one.job, one.attempt)
                continue
            await self._run(self._task(one.job), [Held(one.job, one.attempt)])

    async def _stopped(self, held: list[Held], beat: Heartbeat) -> str:
        """The task raised JobCancelled: end its jobs as the heartbeat's reason says."""
        if beat.lease_lost.is_set():
            return "lease lost"
        if beat.cancel.is_set():  # every job still ours was cancelled
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
            "jobs": [*self._running, *self._finishing_ids],
            "last_loop_age_s": round(age, 3),
        }


def _ids(held: list[Held]) -> str:
    return ", ".join(str(one.job.id) for one in held)


def _attempts(held: list[Held]) -> str:
    return ", ".join(str(one.attempt) for one in held)


async def _wait_any(*events_and_timeout: asyncio.Event, timeout: float) -> None:
    waiters = [asyncio.create_task(event.wait()) for event in events_and_timeout]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
