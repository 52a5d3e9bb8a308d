"""A real worker process whose engine draws by sleeping, for tests/test_crash_overlap.py: the real
`generation.worker.Worker` loop (claim, lease, heartbeat, the overlap of one job's finishing with
the next job's drawing) and the real `PictureTask.finish` (PNG encoding, blob store with fsync,
completion with its compare-and-set and outbox row). Only the drawing is replaced: each job
"draws" for `OVERLAP_DRAW_SECONDS` and hands back one picture, unencoded, as the real engine
does with `render_job(..., defer_png=True)`.

    python tests/support/overlap_worker.py DATABASE_URL EVENTS_FILE BLOBS_DIR [block]

With `block`, every blob write hangs forever after saying so: a SIGKILL then lands after a job
was drawn and before it could be completed. SDBOT_OVERLAP_OUTPUTS=0 turns the overlap off.
EVENTS_FILE gets one line per event: `ready 0`, `drawing JOB`, `storing KEY`, `completed JOB`."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from PIL import Image  # noqa: E402

from generation.errors import JobCancelled  # noqa: E402
from generation.jobs import Rendered, RenderedImage  # noqa: E402
from generation.spec import GenerationSpec  # noqa: E402
from generation.worker import PictureTask, Worker, WorkerLimits  # noqa: E402
from storage.blobs import LocalBlobStore  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.tables import Job  # noqa: E402

DRAW_SECONDS = float(os.environ.get("OVERLAP_DRAW_SECONDS", "0.3"))


def event(events: Path, line: str) -> None:
    fd = os.open(events, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


class SleepingEngine:
    loaded_model = None
    tools = SimpleNamespace(safety_classifier=None)  # nothing is scored

    def preload(self, model: str) -> None:
        pass


class BlockingBlobs(LocalBlobStore):
    def __init__(self, root: Path, events: Path, block: bool):
        super().__init__(root)
        self.events, self.block = events, block

    def put(self, data: bytes, extension: str) -> str:
        if self.block:
            event(self.events, f"storing {len(data)}")
            while True:  # the job was drawn and is not completed: the test kills us here
                time.sleep(60)
        return super().put(data, extension)


class SleepingTask(PictureTask):
    def work(self, progress: Any, stopping: Any, should_yield: Any) -> Rendered:
        event(self.worker.events, f"drawing {self.job.id}")  # type: ignore[attr-defined]
        for step in range(10):
            time.sleep(DRAW_SECONDS / 10)
            progress(step + 1, 10)
            if stopping():
                raise JobCancelled()
        picture = Image.new("RGB", (8, 8), (self.job.id * 40 % 256, 90, 160))
        return Rendered([RenderedImage(0, self.spec.seed, b"", 8, 8, f"Seed: {self.spec.seed}", picture=picture)], [])

    async def finish(self, produced: Rendered, run_seconds: float) -> None:  # type: ignore[override]
        await super().finish(produced, run_seconds)
        event(self.worker.events, f"completed {self.job.id}")  # type: ignore[attr-defined]


class SleepingWorker(Worker):
    def __init__(self, db: Database, events: Path, blobs: Path, block: bool, limits: WorkerLimits):
        super().__init__(db, SleepingEngine(), BlockingBlobs(blobs, events, block), limits)  # type: ignore[arg-type]
        self.events = events

    def _task(self, job: Job) -> SleepingTask:  # type: ignore[override]
        return SleepingTask(self, job, GenerationSpec.model_validate(job.params))

    async def recover_dead_local_jobs(self) -> None:
        await super().recover_dead_local_jobs()
        event(self.events, "ready 0")


async def main(url: str, events: Path, blobs: Path, block: bool) -> None:
    db = Database(url)
    overlap = os.environ.get("SDBOT_OVERLAP_OUTPUTS", "1") not in ("0", "false")
    limits = WorkerLimits(lease_seconds=30, progress_seconds=0.1, poll_seconds=0.05, overlap_outputs=overlap)
    worker = SleepingWorker(db, events, blobs, block, limits)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await worker.run(stop)
    finally:
        await db.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4:] == ["block"]))
