"""ControlNet and Instruct Pix2Pix in the engine, on the tiny model and its built-in tiny
ControlNets and Pix2Pix model (random weights, the real architectures, loaded from the folders
they are saved in): pixels equal bare diffusers' for one control, two controls (multi-ControlNet),
img2img and /edit; the maps are the preprocessors' outputs; guidance start/end and the control
modes change the picture as they should; a QR map decodes to its text."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from config import ModelEntry, ModelRegistry
from generation.control.inputs import PROMPT_MODE_DECAY
from generation.control.preprocess import xdog
from generation.control.tiny import ensure_tiny_controlnet, ensure_tiny_pix2pix
from generation.engine import Engine
from generation.jobs import render_job, run_job
from generation.models.loader import ModelCache
from generation.models.tiny import TINY_VERSION
from generation.spec import ControlRef, GenerationSpec
from storage.blobs import LocalBlobStore


@pytest.fixture(scope="module")
def engine(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    cache = ModelCache(ModelRegistry([ModelEntry(source="tiny")]), models_dir, torch.device("cpu"), torch.float32)
    return Engine(cache, LocalBlobStore(tmp_path_factory.mktemp("control-blobs")))


@pytest.fixture(scope="module")
def photo(engine: Engine) -> tuple[str, Image.Image]:
    """A picture with edges worth finding: shapes on a soft background, 96x64."""
    image = Image.new("RGB", (96, 64), (200, 180, 150))
    draw = ImageDraw.Draw(image)
    draw.ellipse((10, 8, 50, 56), fill=(40, 60, 90))
    draw.rectangle((58, 12, 88, 40), fill=(230, 230, 240), outline=(10, 10, 10), width=2)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return engine.blobs.put(buffer.getvalue(), "png"), image


def spec(**changes) -> GenerationSpec:  # type: ignore[no-untyped-def]
    base = dict(kind="txt2img", prompt="a fox", model="tiny", width=96, height=64, steps=4, cfg=7.0, sampler="Euler", seed=3)
    base.update(changes)
    return GenerationSpec(**base)


def control(key: str, type_: str = "canny", preprocessor: str = "canny", **changes) -> ControlRef:  # type: ignore[no-untyped-def]
    return ControlRef(type=type_, model=f"tiny-{type_}", preprocessor=preprocessor, image=key, **changes)  # type: ignore[arg-type]


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def bare(models_dir: Path, types: list[str], pipeline: str = "txt2img", **call) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Bare diffusers, as its ControlNet docs show it, on the same saved folders."""
    from diffusers import (
        ControlNetModel,
        EulerDiscreteScheduler,
        StableDiffusionControlNetImg2ImgPipeline,
        StableDiffusionControlNetPipeline,
    )

    nets = [ControlNetModel.from_pretrained(ensure_tiny_controlnet(models_dir, t)) for t in types]
    cls = StableDiffusionControlNetPipeline if pipeline == "txt2img" else StableDiffusionControlNetImg2ImgPipeline
    pipe = cls.from_pretrained(
        str(models_dir / TINY_VERSION), controlnet=nets[0] if len(nets) == 1 else nets, safety_checker=None, requires_safety_checker=False
    )
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    result = pipe("a fox", num_inference_steps=4, guidance_scale=7.0, generator=torch.Generator().manual_seed(3), **call)
    return np.asarray(result.images[0]).astype(int)


def canny_map(image: Image.Image, low: int = 100, high: int = 200) -> Image.Image:
    return Image.fromarray(cv2.Canny(np.asarray(image), low, high)).convert("RGB")


def test_one_control_equals_bare_diffusers_and_its_map_is_canny(engine: Engine, photo: tuple[str, Image.Image], models_dir: Path) -> None:
    key, image = photo
    rendered = render_job(engine, spec(controls=(control(key),)))
    [ours] = rendered.images
    expected_map = canny_map(image)
    assert np.array_equal(pixels(rendered.maps[0]), np.asarray(expected_map).astype(int))  # the map shown is canny's
    reference = bare(models_dir, ["canny"], image=expected_map, width=96, height=64)
    assert np.abs(pixels(ours.png) - reference).max() <= 2
    [plain] = run_job(engine, spec())
    assert np.abs(pixels(ours.png) - pixels(plain.png)).mean() > 3  # the control changes the picture
    assert 'ControlNet 0: "Module: canny, Model: tiny-canny, Weight: 1, Guidance Start: 0, Guidance End: 1' in ours.parameters
    thresholds = render_job(engine, spec(controls=(control(key, low=20, high=60),)))
    assert np.array_equal(pixels(thresholds.maps[0]), np.asarray(canny_map(image, 20, 60)).astype(int))
    assert "Threshold A: 20, Threshold B: 60" in thresholds.images[0].parameters


def test_two_controls_equal_the_multi_controlnet_pipeline(engine: Engine, photo: tuple[str, Image.Image], models_dir: Path) -> None:
    key, image = photo
    units = (control(key, weight=0.8), control(key, "scribble", "scribble_xdog", weight=0.5))
    rendered = render_job(engine, spec(controls=units))
    scribble = Image.fromarray(xdog(np.asarray(image))).convert("RGB")
    assert np.array_equal(pixels(rendered.maps[1]), np.asarray(scribble).astype(int))
    reference = bare(
        models_dir, ["canny", "scribble"], image=[canny_map(image), scribble], width=96, height=64, controlnet_conditioning_scale=[0.8, 0.5]
    )
    assert np.abs(pixels(rendered.images[0].png) - reference).max() <= 2
    assert "ControlNet 1: " in rendered.images[0].parameters


def test_guidance_start_and_end(engine: Engine, photo: tuple[str, Image.Image], models_dir: Path) -> None:
    key, image = photo
    [whole] = run_job(engine, spec(controls=(control(key),)))
    [first_half] = run_job(engine, spec(controls=(control(key, end=0.5),)))
    reference = bare(models_dir, ["canny"], image=canny_map(image), width=96, height=64, control_guidance_end=0.5)
    assert np.abs(pixels(first_half.png) - reference).max() <= 2
    assert np.abs(pixels(first_half.png) - pixels(whole.png)).mean() > 0.5
    # starting after the last step: the ControlNet never steers, and the picture is the plain one
    [never] = run_job(engine, spec(controls=(control(key, start=0.9),)))
    [plain] = run_job(engine, spec())
    assert np.abs(pixels(never.png) - pixels(plain.png)).max() <= 2


def test_control_modes(engine: Engine, photo: tuple[str, Image.Image], models_dir: Path) -> None:
    key, image = photo
    drawn = {
        mode: pixels(run_job(engine, spec(controls=(control(key),), control_mode=mode))[0].png)
        for mode in ("balanced", "prompt", "control")
    }
    # "ControlNet is more important" is diffusers' guess mode
    guess = bare(models_dir, ["canny"], image=canny_map(image), width=96, height=64, guess_mode=True)
    assert np.abs(drawn["control"] - guess).max() <= 2
    # "My prompt is more important": the residuals scaled by 0.825^(12 - i), so the ControlNet's pull weakens
    [plain] = run_job(engine, spec())
    pull = {mode: np.abs(drawn[mode] - pixels(plain.png)).mean() for mode in drawn}
    assert pull["prompt"] < pull["balanced"] and np.abs(drawn["prompt"] - drawn["balanced"]).mean() > 0.5
    assert PROMPT_MODE_DECAY == 0.825


def test_a_control_steers_img2img_and_inpaint(engine: Engine, photo: tuple[str, Image.Image], models_dir: Path) -> None:
    key, image = photo
    [varied] = run_job(engine, spec(kind="img2img", init_image=key, strength=0.75, controls=(control(key),)))
    # (the img2img ControlNet pipeline's own default weight is 0.8; the job's is 1, as everywhere)
    reference = bare(
        models_dir, ["canny"], "img2img", image=image, control_image=canny_map(image), strength=0.75, controlnet_conditioning_scale=1.0
    )
    assert np.abs(pixels(varied.png) - reference).max() <= 2
    mask = Image.new("L", (96, 64), 0)
    mask.paste(255, (20, 10, 60, 50))
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    mask_key = engine.blobs.put(buffer.getvalue(), "png")
    for only_masked in (False, True):
        [painted] = run_job(
            engine,
            spec(
                kind="inpaint", init_image=key, mask=mask_key, strength=0.9, mask_blur=0, only_masked=only_masked, controls=(control(key),)
            ),
        )
        outside = np.asarray(mask) == 0
        assert np.array_equal(pixels(painted.png)[outside], np.asarray(image).astype(int)[outside]), only_masked


def test_a_qr_map_decodes_to_its_text(engine: Engine) -> None:
    qr = ControlRef(type="qr", model="tiny-qr", preprocessor="qr", text="https://example.com/sdbot")
    rendered = render_job(engine, spec(width=128, height=128, controls=(qr,)))
    decoded, _, _ = cv2.QRCodeDetector().detectAndDecode(pixels(rendered.maps[0]).astype(np.uint8))
    assert decoded == "https://example.com/sdbot" and rendered.images[0].width == 128
    assert 'QR text: \\"https://example.com/sdbot\\"' in rendered.images[0].parameters or "QR text: https" in rendered.images[0].parameters


def test_edit_equals_bare_instruct_pix2pix(engine: Engine, photo: tuple[str, Image.Image], models_dir: Path) -> None:
    from diffusers import EulerDiscreteScheduler, StableDiffusionInstructPix2PixPipeline

    key, image = photo
    [ours] = run_job(engine, spec(kind="instruct", prompt="make it snowy", model="tiny-pix2pix", init_image=key, image_cfg=1.5))
    pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(
        str(ensure_tiny_pix2pix(models_dir)), safety_checker=None, requires_safety_checker=False
    )
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    reference = pipe(
        "make it snowy",
        image=image,
        num_inference_steps=4,
        guidance_scale=7.0,
        image_guidance_scale=1.5,
        generator=torch.Generator().manual_seed(3),
    ).images[0]
    assert np.abs(pixels(ours.png) - np.asarray(reference).astype(int)).max() <= 2
    [closer] = run_job(engine, spec(kind="instruct", prompt="make it snowy", model="tiny-pix2pix", init_image=key, image_cfg=4.0))
    assert np.abs(pixels(closer.png) - pixels(ours.png)).mean() > 0.5  # the image guidance matters
    assert "Image CFG scale: 1.5" in ours.parameters and "Model: tiny-pix2pix" in ours.parameters


def test_an_sdxl_controlnet_from_the_config_equals_bare_diffusers(tmp_path: Path) -> None:
    """A configured ControlNet (SDBOT_CONTROLNETS) on an SDXL model: the tiny SDXL and a random
    ControlNet made from its UNet, each loaded from the folder it was saved in."""
    from diffusers import ControlNetModel, EulerDiscreteScheduler, StableDiffusionXLControlNetPipeline

    from config.models import ControlNetEntry
    from generation.control.nets import ControlNets
    from tests.support.tiny_xl import build_tiny_xl

    pipe = build_tiny_xl()
    pipe.save_pretrained(tmp_path / "xl")
    torch.manual_seed(0)
    made = ControlNetModel.from_unet(pipe.unet, conditioning_embedding_out_channels=(16, 32))  # its VAE halves: one stride
    with torch.no_grad():
        for conv in [*made.controlnet_down_blocks, made.controlnet_mid_block, made.controlnet_cond_embedding.conv_out]:
            conv.weight.normal_(0, 0.3)
    made.save_pretrained(tmp_path / "xl-canny")
    cpu = torch.device("cpu")
    cache = ModelCache(
        ModelRegistry([ModelEntry(source=str(tmp_path / "xl"), name="xl", size=64)]), tmp_path / "models", cpu, torch.float32
    )
    nets = ControlNets(
        {"xl-canny": ControlNetEntry(type="canny", source=str(tmp_path / "xl-canny"))}, tmp_path / "models", cpu, torch.float32
    )
    engine = Engine(cache, LocalBlobStore(tmp_path / "blobs"), controlnets=nets)
    image = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(image).ellipse((10, 10, 50, 50), outline="black", width=3)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    unit = ControlRef(type="canny", model="xl-canny", preprocessor="canny", image=engine.blobs.put(buffer.getvalue(), "png"))
    job = dict(kind="txt2img", prompt="a fox", model="xl", width=64, height=64, steps=3, cfg=5.0, sampler="Euler", seed=1)
    [ours] = run_job(engine, GenerationSpec(**job, controls=(unit,)))  # type: ignore[arg-type]
    [plain] = run_job(engine, GenerationSpec(**job))  # type: ignore[arg-type]
    bare_pipe = StableDiffusionXLControlNetPipeline.from_pretrained(
        str(tmp_path / "xl"), controlnet=ControlNetModel.from_pretrained(tmp_path / "xl-canny")
    )
    bare_pipe.scheduler = EulerDiscreteScheduler.from_config(bare_pipe.scheduler.config)
    reference = bare_pipe(
        "a fox",
        image=canny_map(image),
        num_inference_steps=3,
        guidance_scale=5.0,
        width=64,
        height=64,
        generator=torch.Generator().manual_seed(1),
    ).images[0]
    assert np.abs(pixels(ours.png) - np.asarray(reference).astype(int)).max() <= 2
    assert np.abs(pixels(ours.png) - pixels(plain.png)).mean() > 3
