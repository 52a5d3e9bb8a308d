"""The overlap (SDBOT_OVERLAP_OUTPUTS) loses nothing on a crash: a real worker process is killed
with SIGKILL after job 1 was drawn and while its outputs were being stored, the engine already
drawing job 2. Job 1 was not completed (no outputs, no delivery); after a restart every job is
completed once, with its outputs on disk and one delivery each. With the overlap off, job 2 is
not drawn while job 1's outputs are stored (tests/support/overlap_worker.py: the real worker loop
and PictureTask.finish, the drawing replaced by a sleep)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image
from sqlalchemy import select

from generation.spec import GenerationSpec
from storage import queue, users
from storage.db import Database
from storage.tables import Delivery, Job, JobOutput
from tests.conftest import ROOT

JOBS = 3


async def fill(url: str) -> None:
    db = Database(url)
    await db.migrate()
    async with db.transaction() as session:
        person = await users.get_or_create(session, "test", "someone")
        for number in range(JOBS):
            spec = GenerationSpec(
                kind="txt2img", prompt=f"fox {number}", model="tiny", width=8, height=8, steps=1, cfg=7.0, sampler="Euler", seed=number + 1
            )
            await queue.enqueue(
                session,
                user_id=person.id,
                platform="test",
                chat_id="c",
                source_message_id=None,
                kind="txt2img",
                model="tiny",
                batch_key="",
                params=spec.model_dump(mode="json"),
                max_attempts=3,
            )
    await db.close()


async def rows(url: str) -> tuple[list[Job], list[JobOutput], list[Delivery]]:
    db = Database(url)
    async with db.transaction() as session:
        jobs = list((await session.execute(select(Job).order_by(Job.id))).scalars())
        outputs = list((await session.execute(select(JobOutput).order_by(JobOutput.job_id))).scalars())
        deliveries = list((await session.execute(select(Delivery).order_by(Delivery.job_id))).scalars())
    await db.close()
    return jobs, outputs, deliveries


class WorkerProcess:
    def __init__(self, tmp_path: Path, url: str, *, block: bool, overlap: bool = True):
        self.events = tmp_path / f"events-{time.monotonic_ns()}.txt"
        self.events.touch()
        env = {**os.environ, "SDBOT_OVERLAP_OUTPUTS": "1" if overlap else "0"}
        command = [sys.executable, str(ROOT / "tests" / "support" / "overlap_worker.py"), url, str(self.events), str(tmp_path / "blobs")]
        self.log = (tmp_path / "worker.log").open("ab")
        self.process = subprocess.Popen([*command, *(["block"] if block else [])], cwd=ROOT, env=env, stdout=self.log, stderr=self.log)

    def lines(self) -> list[str]:
        return self.events.read_text().splitlines()

    def wait_for(self, *wanted: str, timeout: float = 120) -> list[str]:
        deadline = time.monotonic() + timeout
        while not all(any(line.startswith(w) for line in self.lines()) for w in wanted):
            assert self.process.poll() is None, f"the worker exited ({self.process.returncode})"
            assert time.monotonic() < deadline, f"no {wanted} in {self.lines()}"
            time.sleep(0.02)
        return self.lines()

    def end(self, sig: int) -> None:
        self.process.send_signal(sig)
        self.process.wait(timeout=60)
        self.log.close()


def test_a_kill_between_drawing_and_completing_loses_nothing(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'queue.db'}"
    asyncio.run(fill(url))
    first = WorkerProcess(tmp_path, url, block=True)
    lines = first.wait_for("storing", "drawing 2")
    first.end(signal.SIGKILL)
    # job 1 was drawn, its outputs were being stored, and job 2 was drawing meanwhile
    assert lines.index("drawing 1") < next(i for i, line in enumerate(lines) if line.startswith("storing")) < lines.index("drawing 2")
    assert not any(line.startswith("completed") for line in lines)
    jobs, outputs, deliveries = asyncio.run(rows(url))
    assert [(job.status, job.attempt) for job in jobs][:2] == [("running", 1), ("running", 1)]
    assert outputs == [] and deliveries == []

    second = WorkerProcess(tmp_path, url, block=False)
    deadline = time.monotonic() + 120
    while not all(job.status == "succeeded" for job in asyncio.run(rows(url))[0]):
        assert time.monotonic() < deadline and second.process.poll() is None, second.lines()
        time.sleep(0.05)
    second.end(signal.SIGTERM)
    assert second.process.returncode == 0

    jobs, outputs, deliveries = asyncio.run(rows(url))
    assert [(job.status, job.attempt) for job in jobs] == [("succeeded", 2), ("succeeded", 2), ("succeeded", 1)]
    assert [output.job_id for output in outputs] == [1, 2, 3]
    assert [(d.job_id, d.kind) for d in deliveries] == [(1, "result"), (2, "result"), (3, "result")]
    for output in outputs:  # stored whole before the job was completed
        path = tmp_path / "blobs" / output.blob_key[:2] / output.blob_key
        with Image.open(path) as picture:
            assert picture.size == (8, 8) and picture.text["parameters"] == f"Seed: {output.job_id}"


def test_without_the_overlap_the_next_job_waits_for_the_outputs(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'queue.db'}"
    asyncio.run(fill(url))
    worker = WorkerProcess(tmp_path, url, block=True, overlap=False)
    worker.wait_for("storing")
    time.sleep(1.0)  # three times a drawing: with the overlap, job 2 would be drawing by now
    lines = worker.lines()
    worker.end(signal.SIGKILL)
    assert "drawing 2" not in lines and lines.count("drawing 1") == 1
