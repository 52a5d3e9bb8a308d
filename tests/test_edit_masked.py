"""A masked /edit (`--box`, a mask attached, `--select`) on the models whose edit has an inpaint
pipeline: FLUX.1 Kontext (FluxKontextInpaintPipeline), Qwen-Image-Edit (QwenImageEditInpaintPipeline)
and FLUX.2 Klein (Flux2KleinInpaintPipeline). On their tiny models each equals bare diffusers'
inpaint pipeline for the same seed, picture and mask (the picture scaled to the edit's pixel count,
the result scaled back and pasted through the feathered mask, as generation.jobs.instruct does);
pixels outside the feathered mask are the picture's own, bit for bit. In chat, the region is given
in /inpaint's three ways, Edit again keeps it, and every masked edit the model can't do is refused
before anything is queued."""

from __future__ import annotations

import functools
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from commands.frame.types import Attachment
from config import ModelEntry, ModelRegistry
from generation.engine import Engine
from generation.imaging.segment import blur_mask, composite
from generation.jobs import run_job
from generation.jobs.instruct import at_area
from generation.models import families, tiny_flux2, tiny_qwen
from generation.models.loader import ModelCache
from generation.models.tiny_dit import ensure_tiny_kontext
from generation.spec import GenerationSpec
from generation.tools import Tools
from storage.blobs import LocalBlobStore
from tests.conftest import bot_env
from tests.support.console_process import ConsoleProcess
from tests.support.tiny_clipseg import build_tiny_clipseg
from tests.test_edit_models import picture
from tests.test_service import Bot, png, running_bot, tiny_settings

INSTRUCTION = "make the hat red"
QWEN_EDIT = "tiny-qwen-image-edit"  # a folder made here: the tiny Qwen-Image-Edit-Plus's weights, as single-picture Qwen-Image-Edit


@pytest.fixture(scope="module", autouse=True)
def _threads(one_torch_thread):  # type: ignore[no-untyped-def]
    yield


def box(size: tuple[int, int], rect: tuple[int, int, int, int]) -> Image.Image:
    mask = Image.new("L", size, 0)
    mask.paste(255, rect)
    return mask


def pixels(image: bytes | Image.Image | str | Path) -> np.ndarray:
    opened = Image.open(io.BytesIO(image)) if isinstance(image, bytes) else Image.open(image) if isinstance(image, str | Path) else image
    return np.asarray(opened.convert("RGB")).astype(int)


def put(engine: Engine, image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return engine.blobs.put(buffer.getvalue(), "png")


def qwen_edit_folder(models_dir: Path) -> Path:
    """The tiny Qwen-Image-Edit-Plus's folder as a Qwen-Image-Edit one (one picture): the same
    components (the edit models share Qwen-Image's architecture and processor), its
    model_index.json naming QwenImageEditPipeline."""
    folder = models_dir / QWEN_EDIT
    if not folder.exists():
        shutil.copytree(tiny_qwen.ensure_edit_plus(models_dir), folder)
        index = json.loads((folder / "model_index.json").read_text())
        (folder / "model_index.json").write_text(json.dumps(index | {"_class_name": "QwenImageEditPipeline"}))
    return folder


@pytest.fixture(scope="module")
def clipseg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_clipseg(tmp_path_factory.mktemp("segmenter") / "clipseg")


@pytest.fixture(scope="module")
def engine(models_dir: Path, clipseg: Path, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    entries = [ModelEntry(source="tiny-kontext"), ModelEntry(source="tiny-flux2"), ModelEntry(source="tiny-qwen-edit-plus")]
    entries.append(ModelEntry(source=str(qwen_edit_folder(models_dir)), name=QWEN_EDIT, architecture="qwen", variant="edit"))
    cache = ModelCache(ModelRegistry(entries), models_dir, torch.device("cpu"), torch.float32, max_loaded=4)
    tools = Tools(device=torch.device("cpu"), dtype=torch.float32, segmenter=str(clipseg))
    return Engine(cache, LocalBlobStore(tmp_path_factory.mktemp("blobs")), tools)


def masked_spec(engine: Engine, model: str, pictures: list[Image.Image], mask: Image.Image | None, **changes) -> GenerationSpec:  # type: ignore[no-untyped-def]
    keys = [put(engine, image) for image in pictures]
    entry = engine.models.registry.get(model)
    assert entry is not None
    fields = dict(
        kind="instruct", prompt=INSTRUCTION, model=model, family=entry.family, width=64, height=48, steps=4, cfg=2.5,
        sampler="Euler", seed=5, n=1, init_image=keys[0], edit_images=tuple(keys[1:]), operation="Edit",
        mask=put(engine, mask) if mask is not None else None, mask_blur=4, strength=1.0,
    )  # fmt: skip
    fields.update(changes)
    return GenerationSpec(**fields)


def bare(folder: Path, class_name: str, pictures: list[Image.Image], mask: Image.Image, blur: int, **call) -> np.ndarray:  # type: ignore[no-untyped-def]
    """What bare diffusers' inpaint pipeline draws for the picture (and a reference) scaled to
    64x48's area in sixteens and the region (the feathered mask's reach) at that size, scaled back
    to the picture's size and pasted through the feathered mask with the project's `composite`."""
    import diffusers

    pipe = getattr(diffusers, class_name).from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    min_side = 64 if class_name.startswith("Flux2") else 0
    scaled = [at_area(image, 64 * 48, 16, min_side=min_side) for image in pictures]
    soft = blur_mask(mask, blur)
    region = soft.point(lambda value: 255 if value > 0 else 0).resize(scaled[0].size, Image.Resampling.NEAREST)
    arguments = dict(prompt=INSTRUCTION, image=scaled[0], mask_image=region, width=scaled[0].width, height=scaled[0].height)
    arguments.update(num_inference_steps=4, strength=1.0, generator=torch.Generator("cpu").manual_seed(5), **call)
    if len(scaled) > 1:
        arguments["image_reference"] = scaled[1]
    [drawn] = pipe(**arguments).images
    original = pictures[0]
    return pixels(composite(original, drawn.resize(original.size, Image.Resampling.LANCZOS), soft))


def outside(mask: Image.Image, blur: int) -> np.ndarray:
    """Where the feathered mask is 0: the picture's own pixels."""
    return np.asarray(blur_mask(mask, blur)) == 0


# --- the families ---------------------------------------------------------------------------------


def test_the_edit_models_declare_their_inpaint_pipelines() -> None:
    import diffusers

    flux, klein, qwen = families.family("flux"), families.family("flux2"), families.family("qwen")
    assert flux.edit_inpaint_pipeline("kontext") == "FluxKontextInpaintPipeline" and flux.edit_inpaint_pipeline("dev") is None
    assert klein.edit_inpaint_pipeline("distilled") == klein.edit_inpaint_pipeline("base") == "Flux2KleinInpaintPipeline"
    assert qwen.edit_inpaint_pipeline("edit") == "QwenImageEditInpaintPipeline"
    assert qwen.edit_inpaint_pipeline("edit-plus") is None and qwen.edit_inpaint_pipeline(None) is None  # diffusers has no -Plus inpaint
    assert families.family("sd1").edit_inpaint_pipeline(None) is None
    pairs = ((flux, "kontext"), (klein, None), (qwen, "edit"), (qwen, "edit-plus"))
    limits = [family.edit.inpaint_limit(variant) for family, variant in pairs]  # type: ignore[union-attr]
    assert limits == [2, 2, 1, 0]  # the picture and one `image_reference`; Qwen-Image-Edit's takes the picture alone
    for name in ("FluxKontextInpaintPipeline", "Flux2KleinInpaintPipeline", "QwenImageEditInpaintPipeline"):
        assert hasattr(diffusers, name), name


# --- the engine: each equals bare diffusers ---------------------------------------------------------


def test_a_masked_kontext_edit_equals_bare_diffusers(engine: Engine, models_dir: Path) -> None:
    hat = picture((200, 60, 30))
    mask = box(hat.size, (10, 8, 50, 40))
    [ours] = run_job(engine, masked_spec(engine, "tiny-kontext", [hat], mask))
    assert (ours.width, ours.height) == hat.size  # pasted back at the picture's size, as /inpaint's
    theirs = bare(
        ensure_tiny_kontext(models_dir),
        "FluxKontextInpaintPipeline",
        [hat],
        mask,
        4,
        guidance_scale=2.5,
        max_area=64 * 48,
        _auto_resize=False,
    )
    assert np.abs(pixels(ours.png) - theirs).max() <= 2
    keep = outside(mask, 4)
    assert np.array_equal(pixels(ours.png)[keep], pixels(hat)[keep])  # outside the feathered mask: the picture, bit for bit
    assert np.abs(pixels(ours.png)[~keep] - pixels(hat)[~keep]).mean() > 5  # inside: edited
    written = ours.parameters
    assert "Mask blur: 1.6" in written and "Denoising strength: 1" in written and "Edit mask: " in written, written


def test_the_kontext_inpaint_pipeline_keeps_the_pictures_latents_outside_the_mask(engine: Engine, models_dir: Path) -> None:
    """What the pipeline itself does (it composites in latent space, not in pixels): at its last
    step the latents outside the mask are the picture's own, so two seeds draw the same pixels
    far from the mask, and differ inside it. (The VAE's round trip still changes them: hence the
    paste through the mask.)"""
    from diffusers import FluxKontextInpaintPipeline

    pipe = FluxKontextInpaintPipeline.from_pretrained(ensure_tiny_kontext(models_dir))
    pipe.set_progress_bar_config(disable=True)
    hat = picture((200, 60, 30), (64, 48))
    mask = box(hat.size, (0, 0, 16, 16))
    drawn = [
        pixels(pipe(prompt=INSTRUCTION, image=hat, mask_image=mask, num_inference_steps=4, max_area=64 * 48, _auto_resize=False,
                    generator=torch.Generator("cpu").manual_seed(seed)).images[0])
        for seed in (1, 2)
    ]  # fmt: skip
    far = np.ones((48, 64), bool)
    far[:32, :32] = False
    assert np.abs(drawn[0] - drawn[1])[far].mean() < 0.5 * np.abs(drawn[0] - drawn[1])[:16, :16].mean()


def test_a_masked_klein_edit_with_a_reference_equals_bare_diffusers(engine: Engine, models_dir: Path) -> None:
    hat, cap = picture((200, 60, 30)), picture((20, 160, 230), (64, 64))
    mask = box(hat.size, (40, 0, 80, 30))
    [ours] = run_job(engine, masked_spec(engine, "tiny-flux2", [hat, cap], mask, cfg=4.0))
    theirs = bare(tiny_flux2.ensure(models_dir), "Flux2KleinInpaintPipeline", [hat, cap], mask, 4, guidance_scale=4.0)
    assert np.abs(pixels(ours.png) - theirs).max() <= 2
    keep = outside(mask, 4)
    assert np.array_equal(pixels(ours.png)[keep], pixels(hat)[keep])
    [alone] = run_job(engine, masked_spec(engine, "tiny-flux2", [hat], mask, cfg=4.0))
    assert np.abs(pixels(alone.png) - pixels(ours.png))[~keep].mean() > 0.5  # the reference steers it
    assert 'Edit pictures: "' in ours.parameters


@pytest.fixture
def small_qwen_pictures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Qwen-Image-Edit's inpaint pipeline draws at ~1024² whatever it is asked (its module's
    `calculate_dimensions`): here, for both runs, at 64x48's area, so that the tiny model's edit takes
    a second."""
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit_inpaint as module

    real = module.calculate_dimensions
    monkeypatch.setattr(module, "calculate_dimensions", lambda area, ratio: real(64 * 48, ratio))


@pytest.mark.usefixtures("small_qwen_pictures")
def test_a_masked_qwen_image_edit_equals_bare_diffusers(engine: Engine, models_dir: Path) -> None:
    entry = engine.models.registry.get(QWEN_EDIT)
    assert entry is not None and entry.guessed_variant == "edit"
    hat = picture((200, 60, 30))
    mask = box(hat.size, (10, 8, 50, 40))
    [ours] = run_job(engine, masked_spec(engine, QWEN_EDIT, [hat], mask, cfg=4.0))
    # CFG is Qwen-Image's true_cfg_scale, with a blank negative prompt
    theirs = bare(qwen_edit_folder(models_dir), "QwenImageEditInpaintPipeline", [hat], mask, 4, true_cfg_scale=4.0, negative_prompt=" ")
    assert np.abs(pixels(ours.png) - theirs).max() <= 2
    keep = outside(mask, 4)
    assert np.array_equal(pixels(ours.png)[keep], pixels(hat)[keep])
    assert "Model family: Qwen-Image" in ours.parameters


def test_a_masked_edit_by_words_keeps_pixels_outside_the_selection(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    hat = picture((200, 60, 30))
    segmenter = engine.tools.segment()
    # The tiny CLIPSeg is random: at the median of its probabilities it selects half the picture.
    threshold = float(np.median(segmenter.probabilities(hat, "hat")))
    monkeypatch.setattr(segmenter, "mask", functools.partial(type(segmenter).mask, segmenter, threshold=threshold))
    selected = np.asarray(segmenter.mask(hat, "hat")) > 0
    assert 0.2 < selected.mean() < 0.8
    [ours] = run_job(engine, masked_spec(engine, "tiny-kontext", [hat], None, select="hat", mask_blur=0))
    assert np.array_equal(pixels(ours.png)[~selected], pixels(hat)[~selected])
    assert np.abs(pixels(ours.png)[selected] - pixels(hat)[selected]).mean() > 5
    assert "Inpaint select: hat" in ours.parameters


def test_a_masked_edit_spec_is_an_edit_models() -> None:
    fields = dict(
        kind="instruct", prompt="x", model="m", width=64, height=64, steps=4, cfg=2.5, sampler="Euler", seed=1, init_image="a.png"
    )
    with pytest.raises(ValueError, match="one of mask and select"):
        GenerationSpec(**fields, mask="m.png", select="hat")
    with pytest.raises(ValueError, match="no image_cfg"):
        GenerationSpec(**fields, mask="m.png", image_cfg=1.5)
    assert GenerationSpec(**fields, select="hat").select == "hat"


# --- in chat ----------------------------------------------------------------------------------------


@pytest.fixture
async def bot(tmp_path, models_dir):  # type: ignore[no-untyped-def]
    settings = tiny_settings(tmp_path, models_dir, "tiny-kontext", ("tiny-flux2", "tiny-qwen-edit-plus", "tiny-flux"))
    async with running_bot(settings) as made:
        yield made


def attached(*pictures: bytes) -> tuple[Attachment, ...]:
    return tuple(Attachment(f"{i + 1}.png", data, "image/png") for i, data in enumerate(pictures))


def png_of(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def written(reply) -> str:  # type: ignore[no-untyped-def]
    return Image.open(reply.images[0].path).text["parameters"]


async def test_a_box_edit_in_chat_then_edit_again_keeps_the_box(bot: Bot) -> None:
    await bot.send("/imagine a red fox --seed 3")
    [(fox_id, fox)] = await bot.finish()
    [(_, status)] = await bot.send(f"/edit {INSTRUCTION} --box 0,0,50%,50% --blur 0", reply_to=fox_id)
    assert status.kind == "status" and "tiny-kontext" in status.text, status.text
    [(edited_id, edited)] = await bot.finish()
    assert edited.reply.kind == "result" and "Edit again" in [action.label for action in edited.reply.actions]
    before, after = pixels(fox.reply.images[0].path), pixels(edited.reply.images[0].path)
    height, width = before.shape[:2]
    keep = np.ones((height, width), bool)
    keep[: height // 2, : width // 2] = False
    assert after.shape == before.shape and np.array_equal(after[keep], before[keep])
    assert np.abs(after[~keep] - before[~keep]).mean() > 1
    mask_field = next(part for part in written(edited.reply).split(", ") if part.startswith("Edit mask: "))
    [(_, again)] = await bot.press(edited_id, "Edit again")
    assert again.kind == "status" and "tiny-kontext" in again.text, again.text
    [(_, twice)] = await bot.finish()
    assert mask_field in written(twice.reply)  # the same mask
    again_pixels = pixels(twice.reply.images[0].path)
    assert np.array_equal(again_pixels[keep], before[keep])


async def test_a_mask_attached_in_chat(bot: Bot) -> None:
    hat = picture((200, 60, 30))
    mask = box(hat.size, (40, 0, 80, 32))
    [(_, status)] = await bot.send(f"/edit {INSTRUCTION} --blur 0", attachments=attached(png_of(hat), png_of(mask.convert("RGB"))))
    assert status.kind == "status" and "tiny-kontext" in status.text, status.text
    [(_, edited)] = await bot.finish()
    after = pixels(edited.reply.images[0].path)
    keep = np.asarray(mask) == 0
    assert after.shape == (64, 80, 3) and np.array_equal(after[keep], pixels(hat)[keep])
    assert np.abs(after[~keep] - pixels(hat)[~keep]).mean() > 1
    # On FLUX.2 Klein a coloured second picture is a reference, and a black-and-white one the mask
    [(_, two)] = await bot.send(f"/edit {INSTRUCTION} --model tiny-flux2", attachments=attached(png_of(hat), png((20, 160, 230))))
    [(_, three)] = await bot.send(
        f"/edit {INSTRUCTION} --model tiny-flux2", attachments=attached(png_of(hat), png((20, 160, 230)), png_of(mask.convert("RGB")))
    )
    assert two.kind == three.kind == "status", (two.text, three.text)
    done = await bot.finish()
    assert [item.reply.kind for _, item in done] == ["result", "result"]
    assert "Edit mask" not in written(done[0][1].reply) and "Edit mask" in written(done[1][1].reply)


async def test_bad_masked_edits_get_a_reply_and_queue_nothing(bot: Bot) -> None:
    hat, mask = png_of(picture((200, 60, 30))), png_of(box((80, 64), (0, 0, 40, 32)).convert("RGB"))
    cases = {
        f"/edit {INSTRUCTION} --box 90,70,10,10": ("`--box 90,70,10,10` covers no part of the 80x64 picture", attached(hat)),
        f"/edit {INSTRUCTION} --box 1,2,3": ("`--box` takes four numbers x,y,w,h", attached(hat)),
        f"/edit {INSTRUCTION} --box 0,0,10,10 --select hat": ("Give the region to edit in one way", attached(hat)),
        f"/edit {INSTRUCTION} --box 0,0,10,10 ": ("You gave `--box` and a mask", attached(hat, mask)),
        f"/edit {INSTRUCTION} --select hat": ("`--select` needs a segmentation model", attached(hat)),
        f"/edit {INSTRUCTION} --box 0,0,10,10 --model tiny-qwen-edit-plus": (
            "`tiny-qwen-edit-plus` (Qwen-Image-Edit-Plus) can't edit inside a region (you gave `--box`). Use `/inpaint",
            attached(hat),
        ),
        f"/edit {INSTRUCTION} --model tiny-qwen-edit-plus": ("can't edit inside a region (you gave a mask", attached(hat, mask)),
        f"/edit {INSTRUCTION} --model tiny-flux --box 0,0,10,10": ("doesn't edit pictures by instruction", attached(hat)),
        f"/edit {INSTRUCTION} --box 0,0,10,10  ": ("edits inside a mask with at most 2 pictures; you gave 3", attached(hat, hat, hat)),
        f"/edit {INSTRUCTION}   ": ("`tiny-kontext` edits with at most 1 picture; you gave 2", attached(hat, png((1, 2, 3)))),
    }  # fmt: skip
    for text, (expected, attachments) in cases.items():
        [(_, reply)] = await bot.send(text, attachments=attachments)
        assert reply.kind == "error" and expected in reply.text, (text, reply.text)
    assert await bot.finish() == []


async def test_instruct_pix2pix_refuses_a_masked_edit(tmp_path: Path, models_dir: Path) -> None:
    async with running_bot(tiny_settings(tmp_path, models_dir, "tiny")) as made:  # no edit model: the tiny Pix2Pix edits
        hat, mask = png_of(picture((200, 60, 30))), png_of(box((80, 64), (0, 0, 40, 32)).convert("RGB"))
        for text, attachments in ((f"/edit {INSTRUCTION} --box 0,0,10,10", attached(hat)), (f"/edit {INSTRUCTION}", attached(hat, mask))):
            [(_, reply)] = await made.send(text, attachments=attachments)
            assert reply.kind == "error" and "Instruct Pix2Pix can't edit inside a region" in reply.text, reply.text
            assert "`/inpaint <what to paint there>`" in reply.text
        assert await made.finish() == []


def test_a_box_edit_in_the_console(tmp_path: Path, models_dir: Path) -> None:
    env = bot_env(tmp_path / "data", models_dir, SDBOT_MODEL="tiny-kontext", SDBOT_DEFAULT_STEPS="2")
    bot = ConsoleProcess(env, tmp_path / "bot.log")
    fox = bot.message("result", reply_to=bot.say(text="/imagine a red fox --seed 5"))
    asked = bot.say(text=f"/edit {INSTRUCTION} --box 10%,0%,50%,40%", reply_to=fox["id"])
    edited = bot.message("result", reply_to=asked)
    assert "Edit" in edited["text"] and "Edit again" in [a["label"] for a in edited["actions"]]
    with Image.open(edited["images"][0]) as image:
        assert "Edit mask: " in image.text["parameters"] and "tiny-kontext" in image.text["parameters"]
    assert bot.finish() == 0
