#!/usr/bin/env python3
"""What rereading the chat-added models costs a request, and what throttling it saves.

The command service rereads the `added_models` table so that a model an admin adds or removes in
any process is known everywhere without a restart (the worker rereads before every job). On
SQLite every transaction takes the writer lock, so the read is not free. This times, on a real
SQLite file and alternating: the read alone (`model_library.sync`), a `/queue` request that
rereads every time (SDBOT_MODEL_SYNC_SECONDS=0), and one with the default throttle (2 s), with 0
and with N added models.

    python bench/model_sync.py [--models 20] [--rounds 200]
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

import run_bot  # noqa: E402
from commands.frame.types import Request  # noqa: E402
from config import Settings  # noqa: E402
from config.models import ModelEntry  # noqa: E402
from storage import model_library  # noqa: E402


async def timed(work) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    await work()
    return time.perf_counter() - start


async def measure(core: run_bot.Core, rounds: int) -> tuple[float, float, float]:
    request = Request(platform="bench", user_id="u", chat_id="c", text="/queue")

    async def sync() -> None:
        async with core.db.transaction() as session:
            await model_library.sync(session, core.ctx.registry)

    async def request_with(sync_seconds: float) -> None:
        core.settings.model_sync_seconds = sync_seconds
        await core.service.handle(request)

    syncs, every, throttled = [], [], []
    for _ in range(rounds):
        syncs.append(await timed(sync))
        every.append(await timed(lambda: request_with(0)))
        throttled.append(await timed(lambda: request_with(2.0)))  # the previous request synced: skipped
    return statistics.median(syncs), statistics.median(every), statistics.median(throttled)


async def main(models: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        core = await run_bot.build_core(Settings(_env_file=None, model="tiny", data_dir=Path(folder)))
        try:
            await measure(core, 10)  # warm-up
            print(f"{'added':>5}  {'sync alone':>10}  {'/queue, sync each':>17}  {'/queue, throttled':>17}  {'each / throttled':>16}")
            for count in (0, models):
                async with core.db.transaction() as session:
                    for i in range(len(core.ctx.registry.names()) - 1, count):
                        entry = ModelEntry(source=f"/models/m{i}", name=f"m{i}", architecture="sd1", size=512)
                        await model_library.add_model(session, entry, None)
                sync, every, throttled = await measure(core, rounds)
                print(
                    f"{count:>5}  {sync * 1000:>7.2f} ms  {every * 1000:>14.2f} ms  {throttled * 1000:>14.2f} ms"
                    f"  {every / throttled:>15.2f}x"
                )
        finally:
            await core.db.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.models, args.rounds))
