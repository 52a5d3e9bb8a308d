"""Image references (`--sref` style, `--oref` subject) through IP-Adapter, on the tiny model and
its built-in tiny IP-Adapter (random weights, the real classes, loaded from the folder they are
saved in): pixels equal bare diffusers' `load_ip_adapter`; the weight matters; nothing leaks into
the next job; the chat flow queues, draws and rerolls with the reference; bad input is refused
before anything is queued."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from config import ModelEntry, ModelRegistry
from generation.control.ip_adapters import style_scale
from generation.control.tiny_ip_adapter import ENCODER_FOLDER, WEIGHT_NAME, ensure_tiny_ip_adapter
from generation.engine import Engine
from generation.jobs import run_job
from generation.models.loader import ModelCache
from generation.models.tiny import TINY_VERSION
from generation.parameters import parse_infotext
from generation.spec import GenerationSpec, ReferenceRef
from storage.blobs import LocalBlobStore


@pytest.fixture(scope="module")
def engine(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    cache = ModelCache(ModelRegistry([ModelEntry(source="tiny")]), models_dir, torch.device("cpu"), torch.float32)
    return Engine(cache, LocalBlobStore(tmp_path_factory.mktemp("reference-blobs")))


def picture() -> Image.Image:
    image = Image.new("RGB", (96, 64), (30, 140, 200))
    draw = ImageDraw.Draw(image)
    draw.ellipse((10, 8, 50, 56), fill=(240, 200, 40))
    draw.rectangle((58, 12, 88, 40), fill=(200, 30, 60))
    return image


@pytest.fixture(scope="module")
def reference(engine: Engine) -> str:
    buffer = io.BytesIO()
    picture().save(buffer, format="PNG")
    return engine.blobs.put(buffer.getvalue(), "png")


def spec(**changes) -> GenerationSpec:  # type: ignore[no-untyped-def]
    base = dict(kind="txt2img", prompt="a fox", model="tiny", width=64, height=64, steps=4, cfg=7.0, sampler="Euler", seed=3)
    base.update(changes)
    return GenerationSpec(**base)


def ref(key: str, kind: str = "style", weight: int = 100) -> ReferenceRef:
    return ReferenceRef(kind=kind, images=(key,), weight=weight, adapter="tiny")  # type: ignore[arg-type]


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def bare(models_dir: Path, scales: list, n: int = 1) -> list[np.ndarray]:  # type: ignore[type-arg]
    """Bare diffusers, as its IP-Adapter docs show it, on the same saved folders."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    folder = ensure_tiny_ip_adapter(models_dir)
    pipe = StableDiffusionPipeline.from_pretrained(str(models_dir / TINY_VERSION), safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    count = len(scales)
    pipe.load_ip_adapter(
        [str(folder)] * count, subfolder=[""] * count, weight_name=[WEIGHT_NAME] * count, image_encoder_folder=str(folder / ENCODER_FOLDER)
    )
    pipe.set_ip_adapter_scale([style_scale(pipe.unet, s[1]) if s[0] == "style" else s[1] for s in scales])
    generators = [torch.Generator().manual_seed(3 + i) for i in range(n)]
    result = pipe(
        "a fox",
        num_inference_steps=4,
        guidance_scale=7.0,
        generator=generators,
        num_images_per_prompt=n,
        width=64,
        height=64,
        ip_adapter_image=[picture()] * count,
    )
    return [np.asarray(image).astype(int) for image in result.images]


def test_style_reference_equals_bare_diffusers(engine: Engine, reference: str, models_dir: Path) -> None:
    ours = pixels(run_job(engine, spec(references=(ref(reference),)))[0].png)
    expected = bare(models_dir, [("style", 1.0)])[0]
    assert np.abs(ours - expected).max() <= 2


def test_style_and_subject_with_a_batch_equal_bare_diffusers(engine: Engine, reference: str, models_dir: Path) -> None:
    refs = (ref(reference, "style", 200), ref(reference, "subject", 50))
    ours = [pixels(image.png) for image in run_job(engine, spec(references=refs, n=2))]
    expected = bare(models_dir, [("style", 2.0), ("subject", 0.3)], n=2)
    for mine, theirs in zip(ours, expected, strict=True):
        assert np.abs(mine - theirs).max() <= 2


def test_weight_changes_the_picture_and_nothing_leaks(engine: Engine, reference: str) -> None:
    plain = pixels(run_job(engine, spec())[0].png)
    at_zero = pixels(run_job(engine, spec(references=(ref(reference, "subject", 0),)))[0].png)
    at_100 = pixels(run_job(engine, spec(references=(ref(reference, "subject", 100),)))[0].png)
    after = pixels(run_job(engine, spec())[0].png)
    assert np.abs(at_zero - plain).max() <= 2  # weight 0: the prompt alone
    assert np.abs(at_100 - plain).mean() > 4 * max(1.0, np.abs(at_zero - plain).mean())
    assert np.array_equal(after, plain)  # the next job is unaffected
    pipe = engine.models.get("tiny").pipeline("txt2img")
    assert pipe.unet.encoder_hid_proj is None and pipe.image_encoder is None


def test_parameters_record_the_references(engine: Engine, reference: str) -> None:
    image = run_job(engine, spec(references=(ref(reference, "style", 250),)))[0]
    fields = parse_infotext(Image.open(io.BytesIO(image.png)).text["parameters"])
    expected = f"Type: style, Model: tiny, Weight: 250, Scale: 2.5, Image hash: {reference.partition('.')[0][:10]}"
    assert fields["IP-Adapter 0"] == expected


# --- the chat flow ---------------------------------------------------------------------------


@pytest.fixture
async def bot(tmp_path, models_dir):  # type: ignore[no-untyped-def]
    from tests.test_service import running_bot, tiny_settings

    async with running_bot(tiny_settings(tmp_path, models_dir, "tiny", ("tiny", "tiny-chroma"))) as made:
        yield made


def attachment(data: bytes, name: str = "ref.png", content_type: str = "image/png"):  # type: ignore[no-untyped-def]
    from commands.frame.types import Attachment

    return Attachment(filename=name, content_type=content_type, data=data)


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    picture().save(buffer, format="PNG")
    return buffer.getvalue()


async def test_sref_as_a_reply_is_drawn_and_kept_by_reroll(bot) -> None:  # type: ignore[no-untyped-def]
    await bot.send("/imagine a lighthouse --seed 5")
    [(picture_id, first)] = await bot.finish()
    [(_, queued)] = await bot.send("/imagine a red fox --seed 7 --sref --sw 250", reply_to=picture_id)
    assert queued.kind == "status" and "sref 250" in queued.text, queued.text
    [(result_id, result)] = await bot.finish()
    assert len(result.reply.images) == 1
    parameters = Image.open(result.reply.images[0].path).text["parameters"]
    assert 'IP-Adapter 0: "Type: style, Model: tiny, Weight: 250, Scale: 2.5' in parameters
    assert "Denoising strength" not in parameters  # the replied picture is the reference, not a remix
    info = (await bot.send(f"/info {result.reply.job_id}"))[0][1].text
    assert "IP-Adapter 0" in info

    await bot.press(result_id, "Reroll")
    [(_, rerolled)] = await bot.finish()
    assert 'IP-Adapter 0: "Type: style, Model: tiny, Weight: 250' in Image.open(rerolled.reply.images[0].path).text["parameters"]
    # a subject reference by message id, attached beside nothing else
    [(_, queued)] = await bot.send(f"/imagine an owl --oref {picture_id} --ow 50")
    assert queued.kind == "status", queued.text
    [(_, owl)] = await bot.finish()
    assert "Type: subject, Model: tiny, Weight: 50, Scale: 0.3" in Image.open(owl.reply.images[0].path).text["parameters"]
    # an attached picture
    [(_, queued)] = await bot.send("/imagine a cat --sref", attachments=(attachment(png_bytes()),))
    assert queued.kind == "status", queued.text
    # a remix on a family without references drops the inherited ones, and says so
    [(_, remix)] = await bot.send("/imagine as a watercolor --model tiny-chroma", reply_to=result_id)
    assert remix.kind == "status" and "Chroma can't draw image references" in remix.text, remix.text
    await bot.finish()


async def test_bad_references_are_refused_before_queueing(bot) -> None:  # type: ignore[no-untyped-def]
    refusals = [
        await bot.send("/imagine a fox --sref"),  # no picture
        await bot.send("/imagine a fox --sref", attachments=(attachment(b"hello", "notes.txt", "text/plain"),)),
        await bot.send("/imagine a fox --sref --sw 5000", attachments=(attachment(png_bytes()),)),
        await bot.send("/imagine a fox --sref --model tiny-chroma", attachments=(attachment(png_bytes()),)),
        await bot.send("/imagine a fox --sw 200"),  # a weight without its reference
        await bot.send("/imagine a fox --oref m999"),  # no such message
    ]
    texts = [reply.text for [(_, reply)] in refusals]
    assert all(reply.kind != "status" for [(_, reply)] in refusals), texts
    assert "needs a picture" in texts[0]
    assert "notes.txt" in texts[1]
    assert "--sw" in texts[2] and "1000" in texts[2]
    assert "Chroma" in texts[3] and "FLUX.1" in texts[3]  # FLUX.1 draws them (tests/test_flux_references.py); Chroma doesn't
    assert "--sref" in texts[4]
    assert "m999" in texts[5]
    assert await bot.finish() == []
