"""Permutations (`a {red, blue} fox`), `--repeat` and `--chaos`: the text's expansion, jobs queued
all together or refused whole against the queue limits, every bad value answered before anything
is queued, and chaos 0 being today's job bit for bit while each chaos picture is a job of its own."""

from __future__ import annotations

import io
import json
import sqlite3
import time
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from commands.explore.permutations import count, expand
from config import ModelEntry, ModelRegistry
from config.roles import RoleLimits
from generation.engine import Engine
from generation.jobs import run_job
from generation.models.loader import ModelCache
from generation.prompts.chaos import vary
from generation.spec import GenerationSpec
from storage.blobs import LocalBlobStore
from tests.test_service import Bot, make_bot

# --- the text -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "made"),
    [
        ("a {red, blue, green} fox", ["a red fox", "a blue fox", "a green fox"]),
        ("{a, b} {x, y}", ["a x", "a y", "b x", "b y"]),  # the first varies slowest, as Midjourney's
        ("a fox --ar {1:1, 3:2}", ["a fox --ar 1:1", "a fox --ar 3:2"]),  # options too
        ("{a {big, small} fox, an owl}", ["a big fox", "a small fox", "an owl"]),  # nested
        ("a {red\\, dark, blue} fox", ["a red, dark fox", "a blue fox"]),  # \, is a comma
        ("{(red, blue:1.2), green}", ["(red, blue:1.2)", "green"]),  # A1111's brackets keep their commas
    ],
)
def test_permutations_expand_in_order(text: str, made: list[str]) -> None:
    assert expand(text) == made
    assert count(text, 40) == len(made)


@pytest.mark.parametrize(
    "text",
    [
        "a {red|blue} fox",  # a wildcard choice: one job, each picture picks (generation.prompts.wildcards)
        "{red, blue|green}",  # a choice between `red, blue` and `green`
        "{prompt}, film noir",  # a style's template: ordinary text
        "{2$$a|b|c}",
        "a {red, blue",  # broken braces: left for the wildcard check to report
        "a fox",
    ],
)
def test_what_is_not_a_permutation_is_left_as_written(text: str) -> None:
    assert expand(text) == [text] and count(text, 40) == 1


def test_counting_never_builds_the_texts() -> None:
    text = "{a, b} " * 40  # 2**40 texts
    started = time.perf_counter()
    assert count(text, 40) == 41
    assert time.perf_counter() - started < 0.5


# --- queueing ---------------------------------------------------------------------------------------


def jobs(bot: Bot) -> list[dict[str, Any]]:
    with sqlite3.connect(bot.core.ctx.settings.data_dir / "sdbot.db") as db:
        return [json.loads(row[0]) for row in db.execute("select params from jobs order by id")]


@pytest.fixture
async def small_bot(settings):  # type: ignore[no-untyped-def]
    """A bot whose default role may have 3 jobs waiting or running."""
    made = await make_bot(settings.model_copy(update={"role_limits": {"default": RoleLimits(queued_jobs=3)}}))
    yield made
    made.worker.executor.shutdown()
    await made.core.db.close()


async def test_a_permutation_of_three_queues_three_jobs_and_each_draws(small_bot: Bot) -> None:
    bot = small_bot
    replies = await bot.send("/imagine a {red, blue, green} fox --seed 5 --size 64x64 --steps 2")
    assert [reply.kind for _, reply in replies] == ["status"] * 3, [reply.text for _, reply in replies]
    queued = jobs(bot)
    assert [job["prompt"] for job in queued] == ["a red fox", "a blue fox", "a green fox"]
    assert {job["seed"] for job in queued} == {5}  # the same seed: they differ only by the permutation
    delivered = await bot.finish()
    assert [item.reply.kind for _, item in delivered] == ["result"] * 3


async def test_a_permutation_past_the_queue_limit_is_refused_whole(small_bot: Bot) -> None:
    bot = small_bot
    [(_, first)] = await bot.send("/imagine an owl --size 64x64 --steps 2")
    assert first.kind == "status"
    [(_, refused)] = await bot.send("/imagine a {red, blue, green} fox --size 64x64")  # 1 + 3 > 3
    assert refused.kind == "error" and "queues 3 jobs" in refused.text and "none of them was queued" in refused.text
    assert len(jobs(bot)) == 1
    [(_, also)] = await bot.send("/imagine a fox --repeat 3 --size 64x64")
    assert also.kind == "error" and "queues 3 jobs" in also.text
    assert len(jobs(bot)) == 1
    two = await bot.send("/imagine a {red, blue} fox --size 64x64 --steps 2")  # 1 + 2 = 3: room
    assert [reply.kind for _, reply in two] == ["status", "status"]
    assert len(jobs(bot)) == 3


async def test_repeats_draw_with_seeds_that_never_meet(bot: Bot) -> None:
    replies = await bot.send("/imagine a fox --repeat 3 --seed 10 --n 2 --size 64x64 --steps 2")
    assert len(replies) == 3
    assert [job["seed"] for job in jobs(bot)] == [10, 12, 14]  # pictures 10-11, 12-13, 14-15
    await bot.send("/imagine an owl --r 2 --size 64x64 --steps 2")  # random seeds, one each
    owls = [job["seed"] for job in jobs(bot)[3:]]
    assert len(owls) == 2 and owls[0] != owls[1]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("/imagine a fox --repeat 0", "`--repeat 0`"),
        ("/imagine a fox --repeat 41", "`--repeat 41`"),
        ("/imagine a fox --repeat many", "`--repeat`"),
        ("/imagine a fox --chaos 101", "`--chaos 101`"),
        ("/imagine a fox --chaos -1", "`--chaos -1`"),
        ("/imagine a fox --c lots", "`--c`"),
        ("/imagine a {red, blue} fox --repeat 30", "60 jobs"),  # SDBOT_MAX_REQUEST_JOBS: 40
        ("/imagine " + "{a, b} " * 6 + "fox", "more than 40 permutations"),
        ("/imagine a fox --repeat {1, 2}", "`--repeat` can't be a permutation"),
        ("/imagine a {red, blue} fox --steps 500", "`--steps 500`"),
    ],
)
async def test_bad_input_is_answered_before_anything_is_queued(bot: Bot, text: str, says: str) -> None:
    [(_, reply)] = await bot.send(text)
    assert reply.kind == "error" and says in reply.text, reply.text
    assert jobs(bot) == []


async def test_discord_style_typed_values_take_repeat_and_chaos(bot: Bot) -> None:
    replies = await bot.send(None, options={"command": "imagine", "args": "a fox", "repeat": 2, "chaos": 40, "size": "64x64"})
    assert [reply.kind for _, reply in replies] == ["status", "status"]
    assert [job["chaos"] for job in jobs(bot)] == [40, 40]


# --- chaos ------------------------------------------------------------------------------------------


def spec(**changes: Any) -> GenerationSpec:
    base = dict(
        kind="txt2img",
        prompt="a red fox, snow, forest, dusk",
        model="tiny",
        width=64,
        height=64,
        steps=3,
        cfg=7.0,
        sampler="Euler a",
        seed=42,
    )
    return GenerationSpec(**{**base, **changes})


def test_chaos_0_changes_nothing_and_more_chaos_varies_each_picture() -> None:
    plain = spec(n=4)
    assert vary(plain.prompt, 7.0, 1, 0) == (plain.prompt, 7.0)
    assert [plain.image_spec(i) for i in range(4)] == [plain.evolve(seed=42 + i, n=1) for i in range(4)]
    assert plain.batch_key() and spec(chaos=30).batch_key() == ""  # chaos pictures are drawn one by one
    wild = spec(n=4, chaos=100)
    pictures = [wild.image_spec(i) for i in range(4)]
    assert all(p.chaos == 0 and p.n == 1 and p.seed == 42 + i for i, p in enumerate(pictures))
    assert all(3.5 <= p.cfg <= 7.0 for p in pictures) and len({p.cfg for p in pictures}) == 4
    assert all(p.prompt.startswith("a red fox") and sorted(p.prompt.split(", ")) == sorted(wild.prompt.split(", ")) for p in pictures)
    assert len({p.prompt for p in pictures}) > 1  # at 100 the parts after the first are reordered
    assert [wild.image_spec(i) for i in range(4)] == pictures  # from the seed alone
    assert vary("a fox", 0.0, 3, 100)[1] == 0.0 and vary("a fox", 1.2, 3, 100)[1] >= 1.0  # no guidance stays none; never under 1
    assert vary("a BREAK b, c, d", 7.0, 3, 100)[0] == "a BREAK b, c, d"  # a layout's order is left


@pytest.fixture(scope="module")
def engine(models_dir, tmp_path_factory) -> Engine:  # type: ignore[no-untyped-def]
    cache = ModelCache(ModelRegistry([ModelEntry(source="tiny")]), models_dir, torch.device("cpu"), torch.float32)
    return Engine(cache, LocalBlobStore(tmp_path_factory.mktemp("blobs")))


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def test_chaos_0_draws_todays_pictures_bit_for_bit_and_a_chaos_picture_is_its_own_job(engine: Engine) -> None:
    today = GenerationSpec.model_validate({key: value for key, value in spec(n=2).model_dump().items() if key != "chaos"})
    assert [image.png for image in run_job(engine, spec(n=2, chaos=0))] == [image.png for image in run_job(engine, today)]
    chaotic = run_job(engine, spec(n=2, chaos=80))
    for index, image in enumerate(chaotic):
        alone = spec(n=2, chaos=80).image_spec(index)
        [again] = run_job(engine, alone)
        assert np.array_equal(pixels(image.png), pixels(again.png)), index  # its parameters' job gives it back
        assert f"CFG scale: {alone.cfg:g}" in image.parameters and "Chaos: 80" in image.parameters
    calm = run_job(engine, spec(n=2))
    assert not np.array_equal(pixels(calm[1].png), pixels(chaotic[1].png))
