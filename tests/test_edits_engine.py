"""The edits of one image, in the engine, on the tiny model: properties, not just "it ran".

- upscales: exact sizes for every method; esrgan through a random-weight spandrel model file;
- inpaint: pixels outside the (feathered) mask are the input's, bit for bit, also in "only
  masked" mode and with a CLIPSeg mask; pixels inside change;
- zoom out / pan: the original is kept pixel for pixel where it sits in the grown canvas;
- --tile: the job is computed on a torus: rolling the initial latents by k latent pixels (a
  multiple of the UNet's downsampling) rolls the picture by 8k pixels, and that fails without
  the circular padding (checked too, so the test can fail);
- a VAE override changes the decode and is written into the parameters;
- face fix: a drawn face is found and changed only inside its padded box; no face is a clear
  message.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from config import ModelEntry, ModelRegistry
from generation.engine import Engine
from generation.errors import EngineUserError
from generation.jobs import run_job
from generation.models.loader import ModelCache
from generation.spec import GenerationSpec
from generation.tools import Tools
from storage.blobs import LocalBlobStore
from tests.support.face_models import face_image, write_gfpgan
from tests.support.sr_models import write_esrgan
from tests.support.tiny_clipseg import build_tiny_clipseg


@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("postprocess-models")
    alt_vae = folder / "alt-vae"
    _other_vae().save_pretrained(alt_vae)
    return {
        "esrgan": write_esrgan(folder / "x4.safetensors", scale=4),
        "gfpgan": write_gfpgan(folder / "gfpgan.safetensors"),
        "clipseg": build_tiny_clipseg(folder / "clipseg"),
        "vae": alt_vae,
    }


def _other_vae():  # type: ignore[no-untyped-def]
    """The tiny model's VAE architecture with other random weights (a "fine-tuned VAE")."""
    from generation.models.tiny import build_tiny_pipeline

    torch.manual_seed(5)
    vae = build_tiny_pipeline().vae
    with torch.no_grad():
        for parameter in vae.decoder.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return vae


@pytest.fixture(scope="module")
def engine(models_dir: Path, model_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Engine:
    device, dtype = torch.device("cpu"), torch.float32
    tools = Tools(
        device=device,
        dtype=dtype,
        upscalers={"x4": str(model_files["esrgan"])},
        face_restorers={"gfpgan": str(model_files["gfpgan"])},
        segmenter=str(model_files["clipseg"]),
        vaes={"alt": str(model_files["vae"])},
        upscale_tile=32,
    )
    cache = ModelCache(ModelRegistry([ModelEntry(source="tiny")]), models_dir, device, dtype)
    return Engine(cache, LocalBlobStore(tmp_path_factory.mktemp("blobs")), tools)


@pytest.fixture(scope="module")
def picture(engine: Engine) -> tuple[str, np.ndarray]:
    """A 64x64 txt2img result in the blob store: (key, pixels)."""
    [image] = run_job(engine, spec())
    return engine.blobs.put(image.png, "png"), pixels(image.png)


def spec(**changes) -> GenerationSpec:  # type: ignore[no-untyped-def]
    base = dict(kind="txt2img", prompt="a red fox", model="tiny", width=64, height=64, steps=4, cfg=7.0, sampler="Euler", seed=42, n=1)
    base.update(changes)
    return GenerationSpec(**base)


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def put_png(engine: Engine, image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return engine.blobs.put(buffer.getvalue(), "png")


@pytest.mark.parametrize("method", ["lanczos", "esrgan", "hires", "latent"])
def test_upscale_sizes(engine: Engine, picture: tuple[str, np.ndarray], method: str) -> None:
    key, original = picture
    upscaler = "x4" if method == "esrgan" else None
    [result] = run_job(
        engine,
        spec(
            kind="upscale",
            init_image=key,
            scale=2,
            upscale_method=method,
            upscaler=upscaler,
            strength=0.5 if method in ("hires", "latent") else None,
        ),
    )
    assert (result.width, result.height) == (128, 128) and pixels(result.png).shape == (128, 128, 3)
    assert f"Upscale method: {method}" in result.parameters and "Size: 128x128" in result.parameters
    if method != "lanczos":  # a model drew it: not just a resampled copy
        lanczos = Image.fromarray(original.astype(np.uint8)).resize((128, 128), Image.Resampling.LANCZOS)
        assert np.abs(pixels(result.png) - np.asarray(lanczos).astype(int)).mean() > 1


def test_esrgan_4x_through_spandrel(engine: Engine, picture: tuple[str, np.ndarray]) -> None:
    [result] = run_job(engine, spec(kind="upscale", init_image=picture[0], scale=4, upscale_method="esrgan", upscaler="x4"))
    assert (result.width, result.height) == (256, 256) and "Postprocess upscaler: x4" in result.parameters


def _box_mask(engine: Engine, box: tuple[int, int, int, int]) -> tuple[str, np.ndarray]:
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, box)
    return put_png(engine, mask), np.asarray(mask) > 0


def _dilated(mask: np.ndarray, reach: int) -> np.ndarray:
    import cv2

    kernel = np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)
    return cv2.dilate(mask.astype(np.uint8), kernel) > 0


@pytest.mark.parametrize(("blur", "only_masked"), [(0, False), (4, False), (4, True), (10, False)])
def test_inpaint_keeps_every_pixel_outside_the_mask(engine: Engine, picture: tuple[str, np.ndarray], blur: int, only_masked: bool) -> None:
    key, original = picture
    mask_key, inside = _box_mask(engine, (16, 8, 40, 32))
    [result] = run_job(
        engine,
        spec(
            kind="inpaint", prompt="a red hat", init_image=key, mask=mask_key, strength=0.9, mask_blur=blur, only_masked=only_masked, seed=3
        ),
    )
    out = pixels(result.png)
    outside = ~_dilated(inside, blur)  # --blur N: the feather reaches N pixels past the mask, no further
    assert np.array_equal(out[outside], original[outside])
    assert np.abs(out[inside] - original[inside]).mean() > 5
    assert "Mask blur: " in result.parameters and ("Inpaint area: Only masked" in result.parameters) == only_masked


def test_inpaint_by_words_keeps_pixels_outside_the_segmented_region(
    engine: Engine, picture: tuple[str, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    key, original = picture
    segmenter = engine.tools.segment()
    image = Image.fromarray(original.astype(np.uint8))
    # The tiny CLIPSeg is random and finds "fox" everywhere at the real threshold; at the median of
    # its probabilities it selects half the picture, so "outside the selection" means something.
    threshold = float(np.median(segmenter.probabilities(image, "fox")))
    monkeypatch.setattr(segmenter, "mask", functools.partial(type(segmenter).mask, segmenter, threshold=threshold))
    selected = np.asarray(segmenter.mask(image, "fox")) > 0
    assert 0.2 < selected.mean() < 0.8
    [result] = run_job(engine, spec(kind="inpaint", prompt="a hat", init_image=key, select="fox", strength=0.9, mask_blur=0))
    out = pixels(result.png)
    assert np.array_equal(out[~selected], original[~selected]) and "Inpaint select: fox" in result.parameters
    assert np.abs(out[selected] - original[selected]).mean() > 5


def test_zoom_out_keeps_the_original_in_the_middle(engine: Engine, picture: tuple[str, np.ndarray]) -> None:
    key, original = picture
    [result] = run_job(
        engine,
        spec(
            kind="outpaint",
            init_image=key,
            width=128,
            height=128,
            placement=(32, 32, 64, 64),
            strength=0.9,
            mask_blur=8,
            operation="Zoom Out 2x",
        ),
    )
    out = pixels(result.png)
    assert out.shape == (128, 128, 3)
    assert np.array_equal(out[32:96, 32:96], original)
    assert np.abs(out[:16]).mean() > 0 and "Operation: Zoom Out 2x" in result.parameters


def test_pan_left_keeps_the_original_on_the_right(engine: Engine, picture: tuple[str, np.ndarray]) -> None:
    key, original = picture
    [result] = run_job(
        engine, spec(kind="outpaint", init_image=key, width=96, height=64, placement=(32, 0, 64, 64), strength=0.9, mask_blur=8)
    )
    out = pixels(result.png)
    assert out.shape == (64, 96, 3) and np.array_equal(out[:, 32:], original)


def _rolled_latents(engine: Engine, shift: int):  # type: ignore[no-untyped-def]
    """Make the txt2img pipeline roll its initial latents by `shift` latent pixels (both axes)."""
    pipe = engine.models.get("tiny").txt2img
    original = type(pipe).prepare_latents

    def prepare_latents(*args, **kwargs):  # type: ignore[no-untyped-def]
        latents = original(pipe, *args, **kwargs)
        return torch.roll(latents, shifts=(shift, shift), dims=(-2, -1))

    return pipe, prepare_latents


@pytest.mark.parametrize("tile", [True, False])
def test_tile_computes_on_a_torus(engine: Engine, tile: bool) -> None:
    k = 8  # the tiny UNet downsamples 3 times: 8 latent pixels, 64 image pixels
    job = spec(width=128, height=128, tile=tile, steps=3)
    [plain] = run_job(engine, job)
    pipe, rolled = _rolled_latents(engine, k)
    pipe.prepare_latents = rolled
    try:
        [shifted] = run_job(engine, job)
    finally:
        del pipe.prepare_latents
    expected = np.roll(pixels(plain.png), shift=(8 * k, 8 * k), axis=(0, 1))
    difference = np.abs(pixels(shifted.png) - expected)
    if tile:
        assert difference.max() <= 2 and "Tiling: True" in plain.parameters
    else:  # without circular padding the borders break the symmetry: the check has teeth
        assert difference.mean() > 2
    # and the padding is the job's alone: the next plain job pads with zeros again
    assert all(c.padding_mode == "zeros" for c in pipe.unet.modules() if isinstance(c, torch.nn.Conv2d))


def test_vae_override(engine: Engine) -> None:
    [own] = run_job(engine, spec())
    [alt] = run_job(engine, spec(vae="alt"))
    assert np.abs(pixels(own.png) - pixels(alt.png)).mean() > 1 and "VAE: alt" in alt.parameters
    [again] = run_job(engine, spec())  # the override was for that job only
    assert np.array_equal(pixels(again.png), pixels(own.png))


def test_facefix_changes_only_the_face(engine: Engine) -> None:
    image = face_image((256, 256), [(128, 120, 90)])
    key = put_png(engine, image)
    [result] = run_job(engine, spec(kind="facefix", init_image=key, face_model="gfpgan", width=256, height=256))
    before, after = np.asarray(image).astype(int), pixels(result.png)
    [box] = engine.tools.detector().detect(image)
    changed = np.argwhere(np.abs(after - before).sum(axis=2) > 0)
    assert len(changed) > 0
    pad = int(0.3 * max(box.width, box.height)) + 2  # restore_faces' default padding
    assert changed[:, 1].min() >= box.x - pad and changed[:, 1].max() < box.x + box.width + pad
    assert changed[:, 0].min() >= box.y - pad and changed[:, 0].max() < box.y + box.height + pad
    assert "Face restoration: gfpgan" in result.parameters


def test_facefix_without_a_face_says_so(engine: Engine, picture: tuple[str, np.ndarray]) -> None:
    flat = put_png(engine, Image.new("RGB", (64, 64), (90, 120, 200)))
    with pytest.raises(EngineUserError, match="no face"):
        run_job(engine, spec(kind="facefix", init_image=flat, face_model="gfpgan"))
