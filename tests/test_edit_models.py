"""/edit by instruction on the models that edit (FLUX.1 Kontext, FLUX.2 Klein with references), on
their tiny models: each edit equals bare diffusers' own edit pipeline for the same seed and
pictures (scaled to the edit's pixel count, as the engine does: generation.jobs.instruct.at_area),
every picture steers the result, and in chat the model is chosen, the pictures are counted and
checked, and the result takes Edit again, Vary and a reply like any picture."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from commands.frame.types import Attachment
from config import ModelEntry, ModelRegistry
from generation.engine import Engine
from generation.jobs import run_job
from generation.jobs.instruct import at_area
from generation.models import families, tiny_flux2, tiny_qwen
from generation.models.loader import ModelCache
from generation.models.tiny_dit import ensure_tiny_kontext
from generation.spec import GenerationSpec
from storage.blobs import LocalBlobStore
from tests.test_service import Bot, png, running_bot, tiny_settings

INSTRUCTION = "make it winter"
PIPELINES = {
    "tiny-kontext": ("FluxKontextPipeline", ensure_tiny_kontext),
    "tiny-flux2": ("Flux2KleinPipeline", tiny_flux2.ensure),
    "tiny-qwen-edit-plus": ("QwenImageEditPlusPipeline", tiny_qwen.ensure_edit_plus),
}


@pytest.fixture(scope="module", autouse=True)
def _threads(one_torch_thread):  # type: ignore[no-untyped-def]
    yield


def picture(color: tuple[int, int, int], size: tuple[int, int] = (80, 64)) -> Image.Image:
    """A picture with some structure (a square of another colour), so that scaling and the VAE see edges."""
    image = Image.new("RGB", size, color)
    image.paste((255 - color[0], color[1], 255 - color[2]), (size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2))
    return image


def pixels(image: bytes | Image.Image) -> np.ndarray:
    opened = Image.open(io.BytesIO(image)) if isinstance(image, bytes) else image
    return np.asarray(opened.convert("RGB")).astype(int)


@pytest.fixture(scope="module")
def engine(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    registry = ModelRegistry([ModelEntry(source=model) for model in PIPELINES])
    cache = ModelCache(registry, models_dir, torch.device("cpu"), torch.float32, max_loaded=3)
    return Engine(cache, LocalBlobStore(tmp_path_factory.mktemp("blobs")))


def edit_spec(engine: Engine, model: str, pictures: list[Image.Image], **changes) -> GenerationSpec:  # type: ignore[no-untyped-def]
    keys = []
    for image in pictures:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        keys.append(engine.blobs.put(buffer.getvalue(), "png"))
    entry = engine.models.registry.get(model)
    assert entry is not None
    fields = dict(
        kind="instruct", prompt=INSTRUCTION, model=model, family=entry.family, width=64, height=48, steps=4, cfg=2.5,
        sampler="Euler", seed=5, n=1, init_image=keys[0], edit_images=tuple(keys[1:]), operation="Edit",
    )  # fmt: skip
    fields.update(changes)
    return GenerationSpec(**fields)


def bare(models_dir: Path, model: str, pictures: list[Image.Image], *, cfg: float = 2.5, seed: int = 5, n: int = 1) -> list[np.ndarray]:
    """What bare diffusers draws: the family's edit pipeline from the same folder, the pictures
    scaled to 64x48's area in sixteens, the same instruction, seed, steps and guidance."""
    import diffusers

    class_name, ensure = PIPELINES[model]
    pipe = getattr(diffusers, class_name).from_pretrained(ensure(models_dir))
    pipe.set_progress_bar_config(disable=True)
    min_side = families.family("flux2").edit.min_side if class_name == "Flux2KleinPipeline" else 0  # type: ignore[union-attr]
    scaled = [at_area(image, 64 * 48, 16, min_side=min_side) for image in pictures]
    call = dict(prompt=INSTRUCTION, width=64, height=48, num_inference_steps=4, guidance_scale=cfg, num_images_per_prompt=n)
    if class_name == "FluxKontextPipeline":
        call.update(image=scaled[0], max_area=64 * 48, _auto_resize=False)
    elif class_name == "QwenImageEditPlusPipeline":  # CFG is its true_cfg_scale, with a blank negative prompt
        call.update(image=scaled, true_cfg_scale=call.pop("guidance_scale"), negative_prompt=" ")
    else:
        call.update(image=scaled)
    generators = [torch.Generator("cpu").manual_seed(seed + i) for i in range(n)]
    return [pixels(image) for image in pipe(generator=generators, **call).images]


def test_the_families_that_edit_say_so() -> None:
    flux, klein = families.family("flux"), families.family("flux2")
    assert flux.edit_pipeline("kontext") == "FluxKontextPipeline" and flux.edit_pipeline("dev") is None
    assert klein.edit_pipeline("distilled") == klein.edit_pipeline("base") == "Flux2KleinPipeline"
    assert families.family("sd1").edit_pipeline(None) is None
    qwen = families.family("qwen")
    assert qwen.edit_pipeline(None) is None and qwen.edit.limit("edit") == 1 and qwen.edit.limit("edit-plus") == 3  # type: ignore[union-attr]
    assert qwen.variant_from(None, "Qwen/Qwen-Image-Edit-2509") == "edit-plus" and qwen.variant_from(None, "Qwen/Qwen-Image-Edit") == "edit"
    # a Kontext folder is FLUX.1, variant kontext, by its model_index.json (its transformer is dev's)
    index = {"_class_name": "FluxKontextPipeline"}
    assert families.from_pipeline_class("FluxKontextPipeline") is flux
    assert flux.variant_from({"guidance_embeds": True}, "/models/some-model", index) == "kontext"
    assert flux.variant_from({"guidance_embeds": True}, "/models/flux1-dev", {"_class_name": "FluxPipeline"}) == "dev"


def test_at_area_keeps_the_aspect_in_multiples() -> None:
    assert at_area(Image.new("RGB", (80, 64)), 64 * 48, 16).size == (64, 48)
    assert at_area(Image.new("RGB", (1000, 1000)), 1024 * 1024, 16).size == (1024, 1024)
    assert at_area(Image.new("RGB", (10, 400)), 64 * 64, 16).size == (16, 256)
    assert at_area(Image.new("RGB", (80, 64)), 64 * 48, 16, min_side=64).size == (96, 64)  # FLUX.2: sides of 64 px at least


def test_a_kontext_edit_equals_bare_diffusers(engine: Engine, models_dir: Path) -> None:
    fox = picture((200, 60, 30))
    [ours] = run_job(engine, edit_spec(engine, "tiny-kontext", [fox]))
    assert (ours.width, ours.height) == (64, 48)
    [theirs] = bare(models_dir, "tiny-kontext", [fox])
    assert np.abs(pixels(ours.png) - theirs).max() <= 2
    [other] = run_job(engine, edit_spec(engine, "tiny-kontext", [picture((20, 160, 230))]))
    # The picture steers the edit. (Weakly: the tiny Kontext's random weights barely attend to the
    # picture's tokens. Ignored, it would change nothing at all: the same seed draws the same noise.)
    assert np.abs(pixels(other.png) - pixels(ours.png)).mean() > 0.2
    assert "Model family: FLUX.1" in ours.parameters and "Distilled CFG Scale: 2.5" in ours.parameters
    assert f"Edit pictures: {edit_spec(engine, 'tiny-kontext', [fox]).init_image[:10]}," in ours.parameters


def test_a_klein_edit_with_two_pictures_equals_bare_diffusers(engine: Engine, models_dir: Path) -> None:
    sofa, cat = picture((200, 60, 30)), picture((20, 160, 230), (64, 64))
    ours = run_job(engine, edit_spec(engine, "tiny-flux2", [sofa, cat], cfg=4.0, n=2))
    theirs = bare(models_dir, "tiny-flux2", [sofa, cat], cfg=4.0, n=2)
    assert [np.abs(pixels(image.png) - expected).max() for image, expected in zip(ours, theirs, strict=True)] <= [2, 2]
    keys = edit_spec(engine, "tiny-flux2", [sofa, cat]).model_dump()
    assert f'Edit pictures: "{keys["init_image"][:10]}, {keys["edit_images"][0][:10]}"' in ours[0].parameters, ours[0].parameters
    [alone] = run_job(engine, edit_spec(engine, "tiny-flux2", [sofa], cfg=4.0))
    assert np.abs(pixels(alone.png) - pixels(ours[0].png)).mean() > 1  # the second picture steers it too


@pytest.fixture
def small_qwen_pictures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Qwen-Image-Edit-Plus reads every picture at 1024² through the VAE and at 384² through
    Qwen2.5-VL (constants of its pipeline module): here, for both runs, at 64² and 56², so that
    the tiny model's edit takes seconds, not a minute."""
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit_plus as module

    monkeypatch.setattr(module, "VAE_IMAGE_SIZE", 64 * 64)
    monkeypatch.setattr(module, "CONDITION_IMAGE_SIZE", 56 * 56)


@pytest.mark.usefixtures("small_qwen_pictures")
def test_a_qwen_image_edit_plus_edit_with_two_pictures_equals_bare_diffusers(engine: Engine, models_dir: Path) -> None:
    entry = engine.models.registry.get("tiny-qwen-edit-plus")
    assert entry is not None and entry.guessed_variant == "edit-plus"
    sofa, cat = picture((200, 60, 30)), picture((20, 160, 230), (64, 64))
    [ours] = run_job(engine, edit_spec(engine, "tiny-qwen-edit-plus", [sofa, cat], cfg=4.0))
    [theirs] = bare(models_dir, "tiny-qwen-edit-plus", [sofa, cat], cfg=4.0)
    assert np.abs(pixels(ours.png) - theirs).max() <= 2
    [alone] = run_job(engine, edit_spec(engine, "tiny-qwen-edit-plus", [sofa], cfg=4.0))
    assert np.abs(pixels(alone.png) - pixels(ours.png)).mean() > 1  # the second picture steers it too
    assert "Model family: Qwen-Image" in ours.parameters


# --- in chat --------------------------------------------------------------------------------------


@pytest.fixture
async def bot(tmp_path, models_dir):  # type: ignore[no-untyped-def]
    async with running_bot(tiny_settings(tmp_path, models_dir, "tiny-kontext", ("tiny-flux2", "tiny-flux"))) as made:
        yield made


def attached(*colors: tuple[int, int, int]) -> tuple[Attachment, ...]:
    return tuple(Attachment(f"{i + 1}.png", png(color), "image/png") for i, color in enumerate(colors))


async def test_edit_in_chat_on_kontext_and_klein(bot: Bot) -> None:
    [(_, queued)] = await bot.send("/imagine a red fox --seed 3")
    [(fox_id, _)] = await bot.finish()
    [(_, status)] = await bot.send(f"/edit {INSTRUCTION}", reply_to=fox_id)  # your model, tiny-kontext, edits
    assert status.kind == "status" and "tiny-kontext" in status.text, status.text
    [(edited_id, edited)] = await bot.finish()
    assert edited.reply.kind == "result" and "Edit again" in [action.label for action in edited.reply.actions]
    written = Image.open(edited.reply.images[0].path).text["parameters"]
    assert written.startswith(INSTRUCTION) and "Model: tiny-kontext" in written, written
    [(_, again)] = await bot.press(edited_id, "Edit again")
    assert again.kind == "status" and "tiny-kontext" in again.text, again.text
    [(_, vary)] = await bot.press(edited_id, "Vary (Subtle)")
    assert vary.kind == "status", vary.text
    assert [item.reply.kind for _, item in await bot.finish()] == ["result", "result"]

    # two pictures on FLUX.2 Klein: the first is edited, the second a reference
    [(_, two)] = await bot.send(
        "/edit put the cat from picture 2 on the sofa --model tiny-flux2", attachments=attached((200, 60, 30), (20, 160, 230))
    )
    assert two.kind == "status" and "tiny-flux2" in two.text, two.text
    [(_, done)] = await bot.finish()
    assert done.reply.kind == "result"


async def test_bad_edits_get_a_reply_and_queue_nothing(bot: Bot) -> None:
    cases = {
        f"/edit {INSTRUCTION}": ("reply to one with `/edit <instruction>`", ()),
        f"/edit {INSTRUCTION} ": ("`tiny-kontext` edits with at most 1 picture; you gave 2", attached((1, 2, 3), (4, 5, 6))),
        f"/edit {INSTRUCTION} --model tiny-flux2": ("at most 4 pictures; you gave 5", attached(*[(i, i, i) for i in range(5)])),
        f"/edit {INSTRUCTION} --model tiny-flux": ("`tiny-flux` (FLUX.1-dev) doesn't edit pictures by instruction. Models here that do: `tiny-kontext`, `tiny-flux2`", attached((1, 2, 3))),
        f"/edit {INSTRUCTION} --model nope": ("nope", attached((1, 2, 3))),
        f"/edit {INSTRUCTION}  ": ("can't read", (Attachment("notes.png", b"not a picture", "image/png"),)),
        f"/edit {INSTRUCTION} --model tiny-flux2 ": ("Picture 2 is 720x80, longer than 8:1", (*attached((1, 2, 3)), Attachment("2.png", png((9, 9, 9), (720, 80)), "image/png"))),
    }  # fmt: skip
    for text, (expected, attachments) in cases.items():
        [(_, reply)] = await bot.send(text, attachments=attachments)
        assert reply.kind == "error" and expected in reply.text, (text, reply.text)
    assert await bot.finish() == []
