"""Batching: several people's compatible txt2img jobs in one pipeline call, each job's pictures
equal to what it gets alone (the engine), claimed together and completed separately (the queue
and the worker)."""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
import threading

import numpy as np
import pytest
import torch
from PIL import Image

import generation.jobs.batched as batched_module
import generation.worker as worker_module
from config import ModelEntry, ModelRegistry
from generation.engine import Engine
from generation.jobs import run_job
from generation.jobs.batched import render_batch
from generation.models.loader import ModelCache
from generation.spec import GenerationSpec
from storage.blobs import LocalBlobStore
from storage.tables import Job


@pytest.fixture(scope="module")
def engine(models_dir, tmp_path_factory) -> Engine:  # type: ignore[no-untyped-def]
    cache = ModelCache(ModelRegistry([ModelEntry(source="tiny")]), models_dir, torch.device("cpu"), torch.float32)
    return Engine(cache, LocalBlobStore(tmp_path_factory.mktemp("blobs")))


def spec(**changes) -> GenerationSpec:  # type: ignore[no-untyped-def]
    base = dict(kind="txt2img", prompt="a red fox", model="tiny", width=64, height=64, steps=4, cfg=7.0, sampler="Euler a", seed=42, n=1)
    base.update(changes)
    return GenerationSpec(**base)


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


# --- which jobs may share a call ---------------------------------------------------------------


def test_batch_key_admits_only_what_shares_one_call() -> None:
    key = spec().batch_key()
    assert key and spec(prompt="a blue whale", negative_prompt="blurry", seed=7, n=3).batch_key() == key
    for different in (
        dict(steps=5),
        dict(cfg=6.0),
        dict(sampler="Euler"),
        dict(width=72),
        dict(clip_skip=2),
        dict(tile=True),
        dict(model="other"),
    ):
        assert spec(**different).batch_key() != key, different
    for alone in (
        dict(prompt="a [fox:cat:2]"),
        dict(prompt="a {fox|cat}"),
        dict(prompt="a __animal__"),
        dict(regions="cols", prompt="a BREAK b"),
    ):
        assert spec(**alone).batch_key() == "", alone
    assert GenerationSpec(**{**spec().model_dump(), "kind": "img2img", "init_image": "ab" * 32, "strength": 0.5}).batch_key() == ""


# --- the engine ---------------------------------------------------------------------------------


@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ 2M Karras", "DPM++ SDE Karras"])
def test_each_job_in_a_batch_gets_the_pixels_it_gets_alone(engine: Engine, sampler: str) -> None:
    """Different prompts, negatives, seeds and --n in one call (ancestral and SDE samplers draw
    noise every step, from each image's own generator or Brownian tree)."""
    specs = [
        spec(sampler=sampler, prompt="a red fox in the snow", seed=1),
        spec(sampler=sampler, prompt="a (blue:1.3) whale", negative_prompt="blurry, text", seed=99, n=2),
        spec(sampler=sampler, prompt="a castle on a hill at dawn", seed=5),
    ]
    batched = render_batch(engine, specs, [1, 2, 3])
    for one, rendered in zip(specs, batched, strict=True):
        alone = run_job(engine, one)
        assert [image.seed for image in rendered.images] == [image.seed for image in alone]
        for mine, reference in zip(rendered.images, alone, strict=True):
            difference = np.abs(pixels(mine.png) - pixels(reference.png)).max()
            assert difference <= 2, (one.prompt, difference)
        assert rendered.images[0].parameters.replace("Job: 1, ", "").replace("Job: 2, ", "").replace("Job: 3, ", "") == alone[0].parameters
    # and the batch really holds different pictures (not one repeated)
    assert np.abs(pixels(batched[0].images[0].png) - pixels(batched[2].images[0].png)).max() > 20


def test_prompts_of_different_lengths_are_drawn_in_one_call_per_length(engine: Engine) -> None:
    calls: list[int] = []
    pipe = engine.models.get("tiny").pipeline("txt2img")
    original = type(pipe).__call__

    def counting(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(kwargs["prompt_embeds"].shape[0])
        return original(self, *args, **kwargs)

    long_prompt = ", ".join(["a very detailed painting of a red fox"] * 12)  # more than 75 tokens: two chunks
    specs = [spec(seed=1), spec(prompt=long_prompt, seed=2), spec(prompt="a whale", seed=3)]
    type(pipe).__call__ = counting
    try:
        batched = render_batch(engine, specs, [None, None, None])
    finally:
        type(pipe).__call__ = original
    assert sorted(calls) == [1, 2]
    alone = run_job(engine, specs[1])
    assert np.abs(pixels(batched[1].images[0].png) - pixels(alone[0].png)).max() <= 2


# --- the worker: claimed together, drawn once, completed separately ----------------------------


def rows(bot, query: str) -> list[tuple]:  # type: ignore[no-untyped-def]
    path = bot.core.settings.resolved_database_url.split("///", 1)[1]
    with sqlite3.connect(path) as db:
        return db.execute(query).fetchall()


async def test_people_share_a_batch_and_each_gets_their_own_pictures(bot, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    batches: list[list[int]] = []
    real = batched_module.render_batch

    def counted(engine, specs, ids, **kwargs):  # type: ignore[no-untyped-def]
        batches.append(list(ids))
        return real(engine, specs, ids, **kwargs)

    monkeypatch.setattr(batched_module, "render_batch", counted)
    await bot.send("/imagine a red fox --seed 1", user="alice")
    await bot.send("/imagine a blue whale --seed 2 --n 2", user="bob")
    await bot.send("/imagine a castle --seed 3 --steps 5", user="carol")  # other steps: not in the batch
    await bot.send("/imagine an owl --seed 4 --no blur", user="dave")
    delivered = await bot.finish()
    assert batches == [[1, 2, 4]]
    assert len(delivered) == 4
    assert rows(bot, "select id, status, attempt from jobs order by id") == [(i, "succeeded", 1) for i in (1, 2, 3, 4)]
    assert rows(bot, "select job_id, count(*) from job_outputs group by job_id") == [(1, 1), (2, 2), (3, 1), (4, 1)]
    engine = bot.worker.engine
    for job_id in (1, 2, 4):
        [params] = rows(bot, f"select params from jobs where id = {job_id}")
        alone = run_job(engine, GenerationSpec.model_validate(json.loads(params[0])))
        for index, image in enumerate(alone):
            [(blob,)] = rows(bot, f'select blob_key from job_outputs where job_id = {job_id} and "index" = {index}')
            mine = np.asarray(Image.open(bot.core.ctx.blobs.path(blob)).convert("RGB")).astype(int)
            assert np.abs(mine - pixels(image.png)).max() <= 2


async def hold_engine(monkeypatch, release: threading.Event) -> None:  # type: ignore[no-untyped-def]
    """The batch waits in the engine thread until `release` (so the test can act meanwhile)."""
    real = batched_module.render_batch

    def held(*args, **kwargs):  # type: ignore[no-untyped-def]
        assert release.wait(20)
        return real(*args, **kwargs)

    monkeypatch.setattr(batched_module, "render_batch", held)


async def until(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


async def test_a_cancelled_or_lost_job_leaves_the_rest_of_its_batch_alone(bot, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    release = threading.Event()
    await hold_engine(monkeypatch, release)
    for user in ("alice", "bob", "carol"):
        await bot.send(f"/imagine a fox for {user} --seed 5", user=user)
    running = asyncio.create_task(bot.worker.run_once())
    await until(lambda: len(rows(bot, "select id from jobs where status = 'running'")) == 3)
    [(_, cancelled)] = await bot.send("/cancel 2", user="bob")
    await asyncio.sleep(bot.core.settings.progress_seconds * 4)  # a few heartbeats see it
    async with bot.core.db.transaction() as s:  # just before the end, another worker took carol's job over
        job = await s.get(Job, 3)
        job.attempt, job.lease_owner = 2, "elsewhere"
    release.set()  # (seen by a last heartbeat, or by the compare-and-set of its completion)
    assert await running
    assert rows(bot, "select id, status, attempt, lease_owner from jobs order by id") == [
        (1, "succeeded", 1, None),
        (2, "cancelled", 1, None),
        (3, "running", 2, "elsewhere"),
    ]
    assert rows(bot, "select job_id from job_outputs") == [(1,)]
    assert rows(bot, "select job_id, kind from deliveries") == [(1, "result")]


async def test_a_failed_batch_draws_its_jobs_one_by_one(bot, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def out_of_memory(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("CUDA out of memory (pretend)")

    monkeypatch.setattr(batched_module, "render_batch", out_of_memory)
    for user in ("alice", "bob"):
        await bot.send(f"/imagine a fox for {user}", user=user)
    await bot.finish()
    assert rows(bot, "select id, status, attempt from jobs order by id") == [(1, "succeeded", 1), (2, "succeeded", 1)]


async def test_shutdown_hands_a_whole_batch_back(bot, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    release = threading.Event()
    await hold_engine(monkeypatch, release)
    for user in ("alice", "bob"):
        await bot.send(f"/imagine a fox for {user}", user=user)
    running = asyncio.create_task(bot.worker.run_once())
    await until(lambda: len(rows(bot, "select id from jobs where status = 'running'")) == 2)
    bot.worker._shutdown.set()
    release.set()
    await running
    assert rows(bot, "select id, status, attempt from jobs order by id") == [(1, "queued", 0), (2, "queued", 0)]


async def test_a_batch_waits_for_more_only_when_asked(bot, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """SDBOT_BATCH_WAIT_MS: a job queued while the first waits joins its batch."""
    bot.worker.limits = worker_module.WorkerLimits(**{**bot.worker.limits.__dict__, "batch_wait_ms": 3000})
    batches: list[list[int]] = []
    real = batched_module.render_batch
    monkeypatch.setattr(batched_module, "render_batch", lambda e, specs, ids, **k: batches.append(list(ids)) or real(e, specs, ids, **k))
    await bot.send("/imagine a fox", user="alice")
    running = asyncio.create_task(bot.worker.run_once())
    await until(lambda: rows(bot, "select status from jobs") == [("running",)])
    await bot.send("/imagine a whale", user="bob")  # wakes the waiting worker
    assert await running
    assert batches == [[1, 2]]
