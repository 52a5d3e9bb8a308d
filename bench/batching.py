#!/usr/bin/env python3
"""Batching's gain: 8 compatible /imagine jobs from 8 people, drawn as one batch against one
by one, through the whole bot path, in one run.

Each round queues the same 8 jobs (8 people, 8 prompts, 8 seeds; one size, steps, sampler and
CFG) through `CommandService.handle`, then the real worker runs until the queue is empty and
every result is delivered; timed from the first request to the last delivery. "batched" is a
bot with SDBOT_MAX_BATCH_JOBS=8, "alone" the same bot with 1 (two SQLite files, one model
folder). Rounds alternate batched/alone, after one untimed round of each (model load, warm-up),
so changes in the machine's speed hit both alike. Every job's pictures are compared between the
two bots: equal pixels (at most 2 of 255 apart) or the bench fails.

    python bench/batching.py                                 # tiny model, 64 px, 20 steps
    python bench/batching.py --model /path/to/sd15 --size 512 --steps 20 --rounds 3

Prints per-round times, the throughput ratio batched/alone and the largest pixel difference.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import run_bot  # noqa: E402
from commands.frame.types import Request  # noqa: E402
from config import Settings  # noqa: E402
from generation.models.tiny import ensure_tiny  # noqa: E402

PROMPTS = [
    "a red fox in the snow",
    "a blue whale under the sea",
    "a castle on a hill at dawn",
    "an owl on a branch",
    "a bowl of ramen, studio light",
    "a lighthouse in a storm",
    "a cat wearing a hat",
    "a city street at night",
]


class Bot:
    def __init__(self, core: run_bot.Core, worker) -> None:  # type: ignore[no-untyped-def]
        self.core, self.worker = core, worker
        self.messages = 0

    async def round(self, args: argparse.Namespace) -> tuple[float, dict[str, Path]]:
        """The 8 jobs, queued and drawn and delivered: seconds, and each person's PNG path."""
        start = time.perf_counter()
        for person, prompt in enumerate(PROMPTS):
            text = f"/imagine {prompt} --seed {1000 + person} --steps {args.steps} --size {args.size}x{args.size}"
            request = Request(
                platform="bench", user_id=f"person{person}", chat_id="c", user_name=f"p{person}", message_id=f"in{self._next()}", text=text
            )
            for reply in await self.core.service.handle(request):
                await self.core.service.sent("bench", "c", f"m{self._next()}", reply)
        while await self.worker.run_once():
            pass
        pictures = {}
        for item in await self.core.service.pending("bench"):
            await self.core.service.delivered("bench", item, f"m{self._next()}")
            [prompt] = [prompt for prompt in PROMPTS if prompt in item.reply.text]  # the caption names it
            pictures[prompt] = item.reply.images[0].path
        seconds = time.perf_counter() - start
        if len(pictures) != len(PROMPTS):
            raise SystemExit(f"expected {len(PROMPTS)} results, got {len(pictures)}")
        return seconds, pictures

    def _next(self) -> int:
        self.messages += 1
        return self.messages


async def make_bot(root: Path, models_dir: Path, model: str, batch: int) -> Bot:
    settings = Settings(
        _env_file=None,
        model=model,
        data_dir=root / f"batch{batch}",
        models_dir=models_dir,
        max_batch_jobs=batch,
        max_batch_images=batch,
        max_queued_jobs_per_user=100,
        progress_seconds=0.5,
        default_sampler="Euler a",
    )
    core = await run_bot.build_core(settings)
    return Bot(core, run_bot.build_worker(core))


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        models_dir = root / "models"
        if args.model == "tiny":
            ensure_tiny(models_dir)
        batched = await make_bot(root, models_dir, args.model, len(PROMPTS))
        alone = await make_bot(root, models_dir, args.model, 1)
        await batched.round(args)  # untimed: model load, warm-up
        await alone.round(args)
        times: dict[str, list[float]] = {"batched": [], "alone": []}
        worst = 0
        for number in range(args.rounds):
            seconds_batched, mine = await batched.round(args)
            seconds_alone, theirs = await alone.round(args)
            times["batched"].append(seconds_batched)
            times["alone"].append(seconds_alone)
            for key, path in mine.items():
                worst = max(worst, int(np.abs(pixels(path) - pixels(theirs[key])).max()))
            print(f"round {number + 1}: batched {seconds_batched:.2f} s, alone {seconds_alone:.2f} s")
        for bot in (batched, alone):
            bot.worker.executor.shutdown()
            await bot.core.db.close()
    b, a = statistics.median(times["batched"]), statistics.median(times["alone"])
    print(f"\n{len(PROMPTS)} jobs from {len(PROMPTS)} people, {args.size}x{args.size}, {args.steps} steps, model {args.model}")
    print(f"batched: {b:.2f} s per round ({len(PROMPTS) / b:.2f} jobs/s); one by one: {a:.2f} s ({len(PROMPTS) / a:.2f} jobs/s)")
    print(f"throughput ratio batched/alone: {a / b:.2f}x")
    print(f"largest pixel difference between a job batched and alone: {worst} of 255")
    if worst > 2:
        raise SystemExit("batched pictures differ from those drawn alone by more than 2 of 255")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
