#!/usr/bin/env python3
"""What the bot costs on top of bare diffusers, for the same jobs, in one run.

Bare: one `StableDiffusionPipeline` from the same folder, scheduler from_config per job,
`pipe(...)` with a CPU generator; the result is PIL images in memory.
Bot: the whole path an adapter sees: `CommandService.handle("/imagine ...")` -> SQLite job ->
worker claim -> engine thread -> PNG with parameters -> blob store (fsync) -> complete + outbox
-> `pending()` -> `delivered()`. Timed from the request until the result is marked delivered.
Both paths run once untimed first (model load, warm-up); then bare and bot jobs alternate, one
at a time, so changes in the machine's speed during the run hit both alike.

    python bench/overhead.py                       # tiny model on this machine's device
    python bench/overhead.py --model /path/to/sd15 --size 512 --steps 20 --jobs 10

Prints per-job times, the ratio bot/bare and the overhead per job in ms.
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

import torch  # noqa: E402

import run_bot  # noqa: E402
from commands.frame.types import Request  # noqa: E402
from config import Settings  # noqa: E402
from generation.models.loader import resolve_device, resolve_dtype  # noqa: E402
from generation.models.tiny import ensure_tiny  # noqa: E402


class BarePipeline:
    """Bare diffusers as its docs show it."""

    def __init__(self, folder: str, device: torch.device, dtype: torch.dtype):
        from diffusers import AutoPipelineForText2Image

        self.pipe = AutoPipelineForText2Image.from_pretrained(folder, dtype=dtype).to(device)
        self.pipe.set_progress_bar_config(disable=True)
        self.config = dict(self.pipe.scheduler.config)
        self.device = device

    def job(self, seed: int, args: argparse.Namespace) -> float:
        from diffusers import EulerDiscreteScheduler

        start = time.perf_counter()
        self.pipe.scheduler = EulerDiscreteScheduler.from_config(self.config)
        self.pipe(
            "a red fox in the snow",
            num_inference_steps=args.steps,
            guidance_scale=7.0,
            width=args.size,
            height=args.size,
            generator=torch.Generator("cpu").manual_seed(seed),
        )
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start


class BotPath:
    """The whole bot, driven the way an adapter drives it."""

    def __init__(self, core: run_bot.Core, settings: Settings):
        self.core = core
        self.settings = settings
        self.delivered = asyncio.Event()
        core.wake_adapters.append(self.delivered.set)

    async def job(self, seed: int, args: argparse.Namespace) -> float:
        text = f"/imagine a red fox in the snow --seed {seed} --steps {args.steps} --cfg 7 --sampler euler --size {args.size}x{args.size}"
        service = self.core.service
        start = time.perf_counter()
        # An adapter records the status message it sent; until it does, the command layer holds
        # the result back (up to STATUS_GRACE), so that it can answer that message.
        for reply in await service.handle(Request(platform="bench", user_id="bench", chat_id="c", text=text)):
            await service.sent("bench", "c", f"s{seed}", reply)
        while not (items := await service.pending("bench")):  # woken by the worker, as an adapter is
            self.delivered.clear()
            try:
                await asyncio.wait_for(self.delivered.wait(), self.settings.poll_seconds)
            except TimeoutError:
                pass
        for item in items:
            await service.delivered("bench", item, f"m{seed}")
        return time.perf_counter() - start


async def measure(folder: str, args: argparse.Namespace, data_dir: Path) -> tuple[list[float], list[float]]:
    """Bare and bot jobs alternate, so drift in the machine's speed hits both alike."""
    settings = Settings(
        _env_file=None,
        model=folder,
        data_dir=data_dir,
        device=args.device,
        dtype=args.dtype,
        max_steps=max(args.steps, 100),
        max_pixels=max(args.size**2, 1024**2),
        max_side=max(args.size, 2048),
    )
    core = await run_bot.build_core(settings)
    worker = run_bot.build_worker(core)
    stop = asyncio.Event()
    worker_task = asyncio.create_task(worker.run(stop))
    device = resolve_device(args.device)
    bare, bot = BarePipeline(folder, device, resolve_dtype(args.dtype, device)), BotPath(core, settings)
    bare_times, bot_times = [], []
    try:
        for i in range(args.jobs + 1):  # job 0 warms both up and is not counted
            bare_time = bare.job(1000 + i, args)
            bot_time = await bot.job(1000 + i, args)
            if i:
                bare_times.append(bare_time)
                bot_times.append(bot_time)
    finally:
        stop.set()
        await worker_task
        await core.db.close()
    return bare_times, bot_times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="tiny, or a diffusers folder")
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = str(ensure_tiny(Path(tmp) / "models")) if args.model == "tiny" else args.model
        device = resolve_device(args.device)
        dtype = resolve_dtype(args.dtype, device)
        print(f"model {args.model}, {args.jobs} jobs of {args.size}x{args.size}, {args.steps} steps, {device} {dtype}")
        bare, bot = asyncio.run(measure(folder, args, Path(tmp) / "data"))

    bare_mean, bot_mean = statistics.mean(bare), statistics.mean(bot)
    print(f"bare diffusers: {bare_mean * 1000:8.1f} ms/job (median {statistics.median(bare) * 1000:.1f})")
    print(f"whole bot path: {bot_mean * 1000:8.1f} ms/job (median {statistics.median(bot) * 1000:.1f})")
    print(
        f"ratio bot/bare: {bot_mean / bare_mean:.3f} (median of per-job ratios "
        f"{statistics.median(b / a for a, b in zip(bare, bot, strict=True)):.3f})"
    )
    print(f"overhead:       {(bot_mean - bare_mean) * 1000:8.1f} ms/job")


if __name__ == "__main__":
    main()
