"""Cache accelerators (`--fast`, SDBOT_CACHE, a model's `cache`; generation.models.caches): off unless
asked for, never shared in a batch with uncached jobs, refused before queueing where the family
doesn't take them, recorded in the PNG, and gone from the model after the job."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pytest
import torch
from PIL import Image

from commands.frame.errors import UserError
from commands.jobs.options import ImagineOptions, build_spec, read_options
from config import ModelEntry, ModelRegistry, Settings
from generation.engine import Engine
from generation.errors import EngineUserError
from generation.jobs import run_job
from generation.models import caches, speed
from generation.models.families import CACHES, FAMILIES, SD1
from generation.models.loader import ModelCache
from generation.models.speed import SpeedOptions
from generation.parameters import parse_infotext
from generation.spec import CacheName, GenerationSpec
from storage.blobs import LocalBlobStore
from tests.test_service import running_bot, tiny_settings


@pytest.fixture(scope="module", autouse=True)
def _threads(one_torch_thread):  # type: ignore[no-untyped-def]
    yield


def spec(**changes: Any) -> GenerationSpec:
    base = dict(kind="txt2img", prompt="a red fox", model="tiny", width=64, height=64, steps=6, cfg=7.0, sampler="Euler", seed=5, n=1)
    base.update(changes)
    return GenerationSpec(**base)


def made(settings: Settings, opts: ImagineOptions, model: str | None = None) -> GenerationSpec:
    return build_spec(replace(opts, prompt="a red fox", model=model), settings=settings, registry=settings.registry(), user_defaults={})[0]


# --- declared once, torch-free ----------------------------------------------------------------------


def test_every_family_declares_its_caches_or_why_none() -> None:
    for family in FAMILIES:
        assert family.caches or family.no_cache, family.id
        assert all(name in CACHES for name in family.caches)
        assert family.cache_for("on") == (family.caches[0] if family.caches else "on")
        assert family.cache_for("off") is None and family.cache_for(None) is None
    none = replace(SD1, caches=(), no_cache="its UNet takes none")
    assert "has no cache accelerator here: its UNet takes none" in (none.cache_refusal("on") or "")
    assert "takes `--fast deepcache`" in (SD1.cache_refusal("fbc") or "")


# --- off unless asked; what asks ---------------------------------------------------------------------


def test_cache_is_off_unless_asked(settings: Settings) -> None:
    assert settings.cache == "off"
    assert made(settings, ImagineOptions()).cache is None
    assert made(settings, ImagineOptions(fast="on")).cache == "deepcache"
    assert made(settings, ImagineOptions(fast="deepcache")).cache == "deepcache"
    on = settings.model_copy(update={"cache": "on"})
    assert made(on, ImagineOptions()).cache == "deepcache"
    assert made(on, ImagineOptions(fast="off")).cache is None
    named = settings.model_copy(update={"cache": "fbc"})  # a setting applies where the family takes it
    assert made(named, ImagineOptions()).cache is None


def test_a_models_entry_sets_its_cache(tmp_path: Path, models_dir: Path) -> None:
    settings = tiny_settings(tmp_path, models_dir, "tiny-sd3", models={"fast-tiny": ModelEntry(source="tiny", cache="on")})
    assert made(settings, ImagineOptions(), "fast-tiny").cache == "deepcache"
    assert made(settings, ImagineOptions(fast="off"), "fast-tiny").cache is None
    with pytest.raises(ValueError, match="cache"):
        ModelEntry(source="tiny", cache="warp")
    with pytest.raises(ValueError, match="SDBOT_CACHE"):
        tiny_settings(tmp_path, models_dir, "tiny", cache="warp")


def test_bad_fast_is_refused_before_queueing(settings: Settings) -> None:
    with pytest.raises(UserError, match="`--fast` is on, off or a cache's name"):
        read_options({"fast": "warp"}, settings, settings.registry())
    assert read_options({"fast": ""}, settings, settings.registry()).fast == "on"  # `--fast` alone
    assert read_options({"fast": True}, settings, settings.registry()).fast == "on"  # Discord's typed value
    with pytest.raises(UserError, match="SD 1.x can't use the cache `fbc`"):
        made(settings, ImagineOptions(fast="fbc"))


async def test_bad_fast_in_chat_creates_no_job(tmp_path: Path, models_dir: Path) -> None:
    async with running_bot(tiny_settings(tmp_path, models_dir, "tiny")) as bot:
        for text, expected in (("/imagine a fox --fast warp", "is on, off or a cache's name"), ("/imagine a fox --fast pab", "takes")):
            [(_, reply)] = await bot.send(text)
            assert reply.kind == "error" and expected in reply.text, reply.text
        assert "#1" not in await bot.history()


# --- batching ------------------------------------------------------------------------------------------


def test_cached_and_uncached_jobs_do_not_share_a_batch() -> None:
    plain, cached = spec().batch_key(), spec(cache="deepcache").batch_key()
    assert plain and cached and plain != cached
    assert spec(cache="deepcache", prompt="a whale", seed=9).batch_key() == cached
    assert spec(cache="fbc").batch_key() not in (plain, cached)
    with pytest.raises(ValueError, match="fbc"):
        spec(cache="warp")
    assert set(get_args(CacheName)) == set(CACHES)  # the spec's names are the declared caches


# --- the engine ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    cache = ModelCache(ModelRegistry([ModelEntry(source="tiny")]), models_dir, torch.device("cpu"), torch.float32)
    return Engine(cache, LocalBlobStore(tmp_path_factory.mktemp("blobs")))


def draw(engine: Engine, **changes: Any) -> tuple[np.ndarray, str]:
    [image] = run_job(engine, spec(**changes))
    with Image.open(io.BytesIO(image.png)) as picture:
        return np.asarray(picture.convert("RGB")).astype(int), picture.info["parameters"]


def test_deepcache_draws_close_records_itself_and_leaves_nothing_behind(engine: Engine) -> None:
    plain, text = draw(engine)
    assert "Cache" not in parse_infotext(text)
    unet = engine.models.get("tiny").denoiser
    calls: list[bool] = []
    block = unet.down_blocks[1]
    handle = block.register_forward_hook(lambda *_: calls.append(True))
    try:
        cached, text = draw(engine, cache="deepcache")
    finally:
        handle.remove()
    assert parse_infotext(text)["Cache"] == "deepcache (interval 3)"
    assert len(calls) == 6  # the hook sees every call; the skipped ones return placeholders at once
    assert 0 < np.abs(cached - plain).max() < 64  # a cached picture differs, a little
    again, _ = draw(engine)
    assert np.array_equal(again, plain)  # the hooks are gone: an uncached job draws as before
    assert "forward" not in vars(block) and not unet._forward_pre_hooks


def test_deepcache_runs_the_deep_blocks_every_third_step(engine: Engine) -> None:
    pipe = engine.models.get("tiny").txt2img
    ran: list[int] = []
    unet = pipe.unet
    real = type(unet.mid_block).forward

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        ran.append(1)
        return real(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(type(unet.mid_block), "forward", counting)  # before the cache, which calls the class's forward
        with caches.applied(pipe, SD1, "deepcache", 7):
            pipe("a fox", num_inference_steps=7, width=64, height=64, output_type="np", generator=torch.Generator().manual_seed(1))
    assert len(ran) == 3  # steps 0, 3 and 6 of 7


def test_a_family_that_does_not_take_the_cache_stops_in_the_engine(engine: Engine) -> None:
    with pytest.raises(EngineUserError, match="can't use the cache `pab`"):
        draw(engine, cache="pab")


# --- regional compile -------------------------------------------------------------------------------------


def test_compile_blocks_compiles_each_repeated_block_in_place(
    engine: Engine, models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    assert SpeedOptions.from_settings(settings.model_copy(update={"compile_blocks": True})).compile_blocks
    monkeypatch.setitem(speed.COMPILE_KWARGS, "backend", "eager")  # dynamo's tracing without inductor's minutes of C++
    options = SpeedOptions(compile_blocks=True)
    compiled = Engine(
        ModelCache(ModelRegistry([ModelEntry(source="tiny")]), models_dir, torch.device("cpu"), torch.float32, speed=options), engine.blobs
    )
    unet = compiled.models.get("tiny").denoiser
    blocks = [m for m in unet.modules() if getattr(m, "_compiled_call_impl", None) is not None]
    assert blocks and {type(m).__name__ for m in blocks} == {"BasicTransformerBlock"}  # UNet2DConditionModel._repeated_blocks
    [image] = run_job(compiled, spec())
    with Image.open(io.BytesIO(image.png)) as picture:
        assert np.abs(np.asarray(picture.convert("RGB")).astype(int) - draw(engine)[0]).max() <= 2
    torch._dynamo.reset()
