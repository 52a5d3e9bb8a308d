#!/usr/bin/env python3
"""How busy the worker keeps the GPU: diffusion time ÷ wall time over a queue of jobs, with the
overlap (`SDBOT_OVERLAP_OUTPUTS`: the next job draws while the last one's pictures are encoded,
scored, stored and completed) off, as before it was built, and on, in the same run.

Each round queues `--jobs` /imagine jobs (16 by default) from as many people through
`CommandService.handle`, half of them compatible (one batch key: drawn in batches of
`SDBOT_MAX_BATCH_JOBS`) and half each of its own (other steps or sampler), then starts a fresh
worker on the one loaded engine and times from its start until the last job is completed.
Diffusion time is the engine thread's time inside `Engine.diffuse` and `Engine.diffuse_batch`
(prompt encoding, the pipeline call, the VAE decode: what runs on the GPU). Every picture is
scored by the tiny safety classifier, as a bot with one configured scores it. A warm-up round
(model and classifier loads) is not counted; rounds alternate off, on, off, on, ... so drift in
the machine's speed hits both alike.

    python bench/utilization.py                      # tiny model at 64², 10 steps, 2 rounds each
    python bench/utilization.py --model /path/to/sd15 --size 512 --steps 20 --rounds 3

Prints each round's busy fraction and throughput, then the medians and their ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select  # noqa: E402

import run_bot  # noqa: E402
from commands.frame.types import Request  # noqa: E402
from config import Settings  # noqa: E402
from generation.engine import Engine  # noqa: E402
from generation.models.loader import resolve_device, resolve_dtype  # noqa: E402
from generation.models.tiny import ensure_tiny  # noqa: E402
from generation.worker import Worker  # noqa: E402
from storage.tables import Job, JobStatus  # noqa: E402


class Busy:
    """Time the engine thread spends inside the engine's diffusion calls (outermost calls only)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.spans: list[tuple[float, float]] = []  # (start, end) of each outermost call
        self._depth = threading.local()

    def wrap(self, method):  # type: ignore[no-untyped-def]
        busy = self

        def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
            depth = getattr(busy._depth, "n", 0)
            busy._depth.n = depth + 1
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                busy._depth.n = depth
                if depth == 0:
                    end = time.perf_counter()
                    busy.seconds += end - start
                    busy.spans.append((start, end))

        return timed


BUSY = Busy()
Engine.diffuse = BUSY.wrap(Engine.diffuse)  # type: ignore[method-assign]
Engine.diffuse_batch = BUSY.wrap(Engine.diffuse_batch)  # type: ignore[method-assign]


def requests(round_number: int, args: argparse.Namespace) -> list[str]:
    """Half compatible (one batch key), half each with a key of its own; interleaved."""
    size = f"--size {args.size}x{args.size}"
    texts = []
    for i in range(args.jobs):
        seed = 100 * round_number + i
        if i % 2 == 0:
            texts.append(f"/imagine a red fox {i} --seed {seed} --steps {args.steps} --cfg 7 --sampler euler {size}")
        else:  # another step count (or sampler) than every other job: drawn alone
            steps, sampler = args.steps + 1 + i // 2, "euler" if i % 4 == 1 else "euler a"
            texts.append(f"/imagine a grey wolf {i} --seed {seed} --steps {steps} --cfg 7 --sampler {sampler} {size}")
    return texts


async def one_round(
    core: run_bot.Core, base: Worker, overlap: bool, number: int, args: argparse.Namespace
) -> tuple[float, float, int, str]:
    """Queue the jobs, run a fresh worker on the loaded engine until they are done: (busy
    seconds, wall seconds, jobs, where the idle time went)."""
    service = core.service
    texts = requests(number, args)
    for i, text in enumerate(texts):
        await service.handle(Request(platform="bench", user_id=f"p{number}-{i}", chat_id="c", text=text))
    done = asyncio.Event()
    limits = dataclasses.replace(base.limits, overlap_outputs=overlap)
    worker = Worker(core.db, base.engine, base.blobs, limits, on_finished=done.set, registry=base.registry)
    stop = asyncio.Event()
    busy_before, spans_before = BUSY.seconds, len(BUSY.spans)
    start = time.perf_counter()
    task = asyncio.create_task(worker.run(stop))
    while True:
        await done.wait()
        done.clear()
        async with core.db.transaction() as session:
            left = (await session.execute(select(func.count()).where(Job.status.in_(JobStatus.ACTIVE)))).scalar_one()
        if not left:
            break
    end = time.perf_counter()
    wall = end - start
    spans = BUSY.spans[spans_before:]
    gaps = [b[0] - a[1] for a, b in zip(spans, spans[1:], strict=False)]
    idle = (
        f"idle: {(spans[0][0] - start) * 1000:.0f} ms before the first draw, {statistics.median(gaps) * 1000:.1f} ms "
        f"between draws (median of {len(gaps)}; max {max(gaps) * 1000:.0f}), {(end - spans[-1][1]) * 1000:.0f} ms after the last"
    )
    stop.set()
    await task
    async with core.db.transaction() as session:
        failed = (await session.execute(select(func.count()).where(Job.status != JobStatus.SUCCEEDED))).scalar_one()
    if failed:
        raise SystemExit(f"{failed} job(s) did not succeed")
    return BUSY.seconds - busy_before, wall, len(texts), idle


async def measure(folder: str, args: argparse.Namespace, data_dir: Path) -> list[tuple[bool, float, float, int]]:
    settings = Settings(
        _env_file=None,
        model=folder,
        data_dir=data_dir,
        device=args.device,
        dtype=args.dtype,
        max_steps=max(args.steps + args.jobs, 100),
        max_pixels=max(args.size**2, 1024**2),
        max_side=max(args.size, 2048),
        safety_classifier="tiny",
        max_batch_jobs=args.batch,
        max_batch_images=args.batch,
        preview="off",
        poll_seconds=0.05,
    )
    core = await run_bot.build_core(settings)
    base = run_bot.build_worker(core)
    base.executor.shutdown()  # its engine is shared by each round's worker
    rows = []
    try:
        await one_round(core, base, True, 0, args)  # warm-up: the model and the classifier load
        for number in range(1, 2 * args.rounds + 1):
            overlap = number % 2 == 0
            busy, wall, jobs, idle = await one_round(core, base, overlap, number, args)
            rows.append((overlap, busy, wall, jobs))
            print(
                f"round {number} overlap {'on ' if overlap else 'off'}: busy {busy:6.2f} s of {wall:6.2f} s "
                f"= {busy / wall:.3f}, {jobs / wall:5.2f} jobs/s; {idle}",
                flush=True,
            )
    finally:
        await core.db.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="tiny, or a diffusers folder")
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=4, help="SDBOT_MAX_BATCH_JOBS (and _IMAGES) of the worker")
    parser.add_argument("--rounds", type=int, default=2, help="rounds with the overlap off, and as many on")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = str(ensure_tiny(Path(tmp) / "models")) if args.model == "tiny" else args.model
        device = resolve_device(args.device)
        print(
            f"model {args.model}, {args.jobs} jobs of {args.size}x{args.size}, {args.steps}+ steps, batches of {args.batch}, "
            f"{device} {resolve_dtype(args.dtype, device)}"
        )
        rows = asyncio.run(measure(folder, args, Path(tmp) / "data"))

    def medians(overlap: bool) -> tuple[float, float]:
        mine = [row for row in rows if row[0] == overlap]
        return statistics.median(b / w for _, b, w, _ in mine), statistics.median(j / w for _, _, w, j in mine)

    (off_busy, off_rate), (on_busy, on_rate) = medians(False), medians(True)
    print(f"GPU-busy fraction, overlap off (before): {off_busy:.3f}   on: {on_busy:.3f}   (median of {args.rounds} rounds each)")
    print(f"throughput, overlap off: {off_rate:.2f} jobs/s   on: {on_rate:.2f} jobs/s   ratio on/off {on_rate / off_rate:.3f}")


if __name__ == "__main__":
    main()
