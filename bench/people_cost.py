#!/usr/bin/env python3
"""What accounts, quotas and the safety classifier cost, against a baseline in the same run.

1. Per request: `/queue` through `CommandService.handle` (which resolves the account's role
   first: the identity, its linked identities, the config's lists) against the same handler
   called with the role already known. Alternating, median of many; once with the role cache
   off (SDBOT_ROLE_CACHE_SECONDS=0: a transaction per request) and once as configured.
2. Per job queued: the quota checks (`people.check_room`: jobs waiting, jobs in the last minute,
   GPU-seconds of the last 24 hours) against an empty transaction on the same database.
3. Per picture: drawing a still on the engine against drawing it and scoring it with the safety
   classifier (the built-in tiny checker unless --classifier names one).

    python bench/people_cost.py [--requests 200] [--classifier /path/to/safety-checker]

Prints medians and ratios. On CPU with tiny models the classifier's share is far larger than on
a GPU with a real model (one CLIP image pass against a whole diffusion run).
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
from commands.account import queue as account  # noqa: E402
from commands.frame.types import Request  # noqa: E402
from commands.jobs import admission as people  # noqa: E402
from config import Settings  # noqa: E402
from storage import users  # noqa: E402


async def requests_cost(core: run_bot.Core, count: int) -> tuple[float, float]:
    request = Request(platform="telegram", user_id="42", chat_id="c", text="/queue")
    resolved = await people.resolve(core.ctx, request)
    full, bare = [], []
    for _ in range(count):
        start = time.perf_counter()
        await core.service.handle(request)
        full.append(time.perf_counter() - start)
        start = time.perf_counter()
        await account.queue_status(core.ctx, resolved, "")
        bare.append(time.perf_counter() - start)
    return statistics.median(full), statistics.median(bare)


async def quota_cost(core: run_bot.Core, count: int) -> tuple[float, float]:
    request = await people.resolve(core.ctx, Request(platform="telegram", user_id="42", chat_id="c"))
    checked, empty = [], []
    for _ in range(count):
        start = time.perf_counter()
        async with core.db.transaction() as session:
            account_row = await users.get_or_create(session, "telegram", "42")
            await people.check_room(core.ctx, session, request, account_row)
        checked.append(time.perf_counter() - start)
        start = time.perf_counter()
        async with core.db.transaction() as session:
            await users.get_or_create(session, "telegram", "42")
        empty.append(time.perf_counter() - start)
    return statistics.median(checked), statistics.median(empty)


def scoring_cost(core: run_bot.Core, classifier: str, repeats: int) -> tuple[float, float]:
    from generation.jobs import render_job, scored
    from generation.spec import GenerationSpec

    engine = run_bot.build_worker(core).engine
    spec = GenerationSpec(kind="txt2img", prompt="a red fox", model="tiny", width=64, height=64, steps=4, seed=1, cfg=7.0, sampler="Euler")
    plain, with_score = [], []
    for _ in range(repeats + 1):  # the first of each warms up
        start = time.perf_counter()
        render_job(engine, spec)
        plain.append(time.perf_counter() - start)
        engine.tools.safety_classifier = classifier
        start = time.perf_counter()
        scored(engine, render_job(engine, spec))
        with_score.append(time.perf_counter() - start)
        engine.tools.safety_classifier = None
    return statistics.median(with_score[1:]), statistics.median(plain[1:])


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--classifier", default="tiny")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(_env_file=None, model="tiny", data_dir=Path(folder) / "data")
        core = await run_bot.build_core(settings)
        try:
            configured = core.ctx.settings
            for label, seconds in (("role cache off", 0.0), ("role cache on", configured.role_cache_seconds)):
                core.ctx.settings = configured.model_copy(update={"role_cache_seconds": seconds})
                full, bare = await requests_cost(core, args.requests)
                print(
                    f"/queue, {label}: {full * 1000:.2f} ms through handle (role resolved) vs {bare * 1000:.2f} ms for the "
                    f"handler alone — x{full / bare:.2f}, +{(full - bare) * 1000:.2f} ms a request"
                )
            core.ctx.settings = configured
            checked, empty = await quota_cost(core, args.requests)
            print(
                f"quota checks: {checked * 1000:.2f} ms vs {empty * 1000:.2f} ms for the user lookup alone "
                f"— x{checked / empty:.2f}, +{(checked - empty) * 1000:.2f} ms a job"
            )
            scored_s, plain_s = await asyncio.to_thread(scoring_cost, core, args.classifier, args.draws)
            print(
                f"a 64x64 still, 4 steps: {scored_s * 1000:.1f} ms scored by `{args.classifier}` vs {plain_s * 1000:.1f} ms "
                f"unscored — x{scored_s / plain_s:.2f}"
            )
        finally:
            await core.db.close()


if __name__ == "__main__":
    asyncio.run(main())
