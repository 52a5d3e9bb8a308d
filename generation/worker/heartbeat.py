"""While a task runs: the heartbeat on the event loop, and what it tells the engine thread.

Every beat (`progress_seconds`, at most a third of the lease) renews the lease of each job of the
task still ours and stores its progress (and its newest live preview, when there is a new one),
in one transaction; a job whose lease was taken over is
marked lost, one whose owner asked to /cancel is marked cancelled (`Held`). The task is told to
stop (`Heartbeat.stopping`, read by the engine thread between steps) when no job is ours any
more ("lost"), when every one still ours was cancelled ("cancel"), or when the worker is stopping
("shutdown": `relay_stop` passes the loop's stop event on to the thread). A training run is also
told to give way (`wants_yield`) when drawing jobs wait or its hours end.

The heartbeat is stopped between beats and awaited (`Heartbeat.stop`), never cancelled: a task
cancelled inside a database transaction and left pending hangs the event loop's shutdown
(docs/architecture.md, "Found along the way").
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from generation.worker.limits import WorkerLimits
from generation.worker.tasks import Held
from storage import queue
from storage.db import Database
from storage.queue import LeaseLost

if TYPE_CHECKING:
    from generation.training.hooks import Stopping

T = TypeVar("T")

log = logging.getLogger(__package__)  # "generation.worker", as before the worker was a package


class Progress:
    """The running task's progress, written by the engine thread, stored by the heartbeat."""

    def __init__(self) -> None:
        self.step = 0
        self.total = 0
        self.note: str | None = None  # a line beside the step (a training run's loss and time left)
        # The newest live preview (a small JPEG, generation.imaging.previews) and how many there
        # were: the heartbeat stores one only when it is new, not a few KB at every beat.
        self.preview: bytes | None = None
        self.previews = 0

    def update(self, step: int, total: int, note: str | None = None) -> None:  # called from the engine thread
        self.step, self.total, self.note = step, total, note or None

    def show(self, preview: bytes) -> None:  # called from the engine thread
        self.preview, self.previews = preview, self.previews + 1


class Heartbeat:
    """The heartbeat of one task's jobs (`held`), from `start` until `stop`. `on_beat` is called
    at every beat (the worker counts itself alive); `shutdown` is the worker's own stop."""

    def __init__(
        self,
        db: Database,
        owner: str,
        limits: WorkerLimits,
        held: list[Held],
        shutdown: threading.Event,
        on_beat: Callable[[], None] = lambda: None,
    ):
        self.db, self.owner, self.limits, self.held = db, owner, limits, held
        self.progress = Progress()
        self.cancel = threading.Event()  # every job still ours was cancelled by its owner
        self.lease_lost = threading.Event()  # no job is ours any more
        self.wants_yield = threading.Event()  # a training run hands the worker to waiting drawing jobs
        self._shutdown = shutdown
        self._on_beat = on_beat
        self._done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def stopping(self) -> Stopping:
        """What the engine thread is told between steps: "" go on, else why to stop."""
        if self.lease_lost.is_set():
            return "lost"
        if self.cancel.is_set():
            return "cancel"
        return "shutdown" if self._shutdown.is_set() else ""

    def start(self) -> None:
        self._task = asyncio.create_task(self._beat())

    async def stop(self) -> None:
        """End the heartbeat between beats and wait for it (before the task's last write, which
        a beat would otherwise race)."""
        self._done.set()
        if self._task is not None:
            await self._task

    async def _beat(self) -> None:
        interval = min(self.limits.progress_seconds, self.limits.lease_seconds / 3)
        held, progress = self.held, self.progress
        training = held[0].job.kind == "train"
        stored_previews = 0  # Progress.previews when a preview was last stored
        while True:
            try:
                await asyncio.wait_for(self._done.wait(), interval)
                return
            except TimeoutError:
                pass
            self._on_beat()
            previews = progress.previews
            preview = progress.preview if previews != stored_previews else None
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
                                preview=preview,
                            )
                        except LeaseLost:  # the UPDATE matched nothing: the transaction goes on for the rest
                            log.warning("job %s attempt %s: lease lost; stopping it", one.job.id, one.attempt)
                            one.lost = True
                            continue
                        one.cancelled = one.cancelled or answer == "cancel"
                    if training and self.limits.training_gives_way(await queue.waiting_besides(session, "train")):
                        self.wants_yield.set()
            except Exception:
                log.exception("jobs %s: heartbeat failed; retrying", [one.job.id for one in held])
                continue
            stored_previews = previews
            ours = [one for one in held if not one.lost]
            if not ours:
                self.lease_lost.set()
                return
            if all(one.cancelled for one in ours):
                self.cancel.set()


def with_previews(engine: object, show: Callable[[bytes], None], work: Callable[[], T]) -> T:
    """Run `work` (on the engine thread) with the engine's live previews going to `show` (the
    heartbeat's `Progress.show`); an engine without previews (a null one in tests) just runs it."""
    previews = getattr(engine, "previews", None)
    if previews is None:
        return work()
    with previews.showing(show):
        return work()


async def relay_stop(stop: asyncio.Event, shutdown: threading.Event) -> None:
    """Pass the worker's stop (an asyncio event) to the engine thread, which checks `shutdown`
    between steps (`Heartbeat.stopping` says "shutdown")."""
    await stop.wait()
    shutdown.set()
