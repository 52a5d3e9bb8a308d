"""`/upscale` and the Upscale buttons: four methods, one result at exactly `scale` times the size.

- lanczos: Pillow's Lanczos resampling. Instant, no model; soft.
- esrgan: a super-resolution model file that spandrel loads (Real-ESRGAN, ESRGAN, SwinIR, ...),
  run in tiles so memory stays bounded (`generation.imaging.upscalers`).
- hires: "SD upscale": enlarge (with the configured super-resolution model when there is one,
  else Lanczos), then img2img at low strength in overlapping tiles of the model's native size,
  blended with linear ramps, so the diffusion model adds detail at any size without ever drawing
  more than its native size at once.
- latent: A1111's latent hires fix: encode, enlarge the latents (bilinear), denoise at the new
  size. One pass over the whole image, so the result must fit the pixel limit of a generation.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from generation.engine import Engine, Tracker
from generation.spec import GenerationSpec


def upscale(engine: Engine, spec: GenerationSpec, tracker: Tracker) -> list[Image.Image]:
    assert spec.scale is not None
    image = engine.init_image(spec)
    target = (round(image.width * spec.scale), round(image.height * spec.scale))
    method = spec.upscale_method
    if method == "lanczos":
        return [image.resize(target, Image.Resampling.LANCZOS)]
    if method == "esrgan":
        return [engine.tools.enlarge(spec.upscaler, image, spec.scale, tracker.should_stop)]
    if method == "hires":
        if spec.upscaler or engine.tools.upscalers:
            big = engine.tools.enlarge(spec.upscaler, image, spec.scale, tracker.should_stop)
        else:
            big = image.resize(target, Image.Resampling.LANCZOS)
        return [tiled_img2img(engine, spec, tracker, big)]
    if method == "latent":
        return latent_upscale(engine, spec, tracker, image, target)
    raise AssertionError(f"unknown upscale method {method!r}")


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of `tile` covering 0..length with at least `overlap` in common."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    count = -(-(length - overlap) // stride)  # ceil
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def tiled_img2img(engine: Engine, spec: GenerationSpec, tracker: Tracker, image: Image.Image) -> Image.Image:
    """img2img over `image` in overlapping native-size tiles, blended with linear ramps."""
    native = engine.native_size(spec)
    overlap = max(8, native // 8 // 8 * 8)
    # Pad to multiples of 8 (the VAE's factor; 16 for FLUX-style transformers); cropped back at the end.
    multiple = engine.size_multiple(spec)
    padded_w, padded_h = -(-image.width // multiple) * multiple, -(-image.height // multiple) * multiple
    padded = Image.new("RGB", (padded_w, padded_h))
    padded.paste(image, (0, 0))
    tile_w, tile_h = min(native, padded_w), min(native, padded_h)
    xs, ys = tile_starts(padded_w, tile_w, overlap), tile_starts(padded_h, tile_h, overlap)
    assert spec.strength is not None
    tracker.planned = len(xs) * len(ys) * int(spec.steps * spec.strength)
    total = np.zeros((padded_h, padded_w, 3))
    weight = np.zeros((padded_h, padded_w, 1))
    ramp = _ramp(tile_w, tile_h, overlap)
    for y in ys:
        for x in xs:
            tile = padded.crop((x, y, x + tile_w, y + tile_h))
            [done] = engine.diffuse(
                spec,
                "img2img",
                tracker,
                seeds=[spec.seed],
                image=tile,
                strength=spec.strength,
                control_region=(x, y, x + tile_w, y + tile_h),
            )
            total[y : y + tile_h, x : x + tile_w] += np.asarray(done, dtype=np.float64) * ramp
            weight[y : y + tile_h, x : x + tile_w] += ramp
    blended = np.clip(np.rint(total / weight), 0, 255).astype(np.uint8)
    return Image.fromarray(blended).crop((0, 0, image.width, image.height))


def _ramp(width: int, height: int, overlap: int) -> np.ndarray:
    """Blend weights of a tile: rising linearly over `overlap` at each edge, never zero (so the
    image border, covered by one tile only, keeps its weight)."""

    def axis(n: int) -> np.ndarray:
        position = np.arange(n, dtype=np.float64)
        edge = np.minimum(position + 1, n - position) / (overlap + 1)
        return np.clip(edge, 1e-3, 1.0)

    return (axis(height)[:, None] * axis(width)[None, :])[..., None]


def latent_upscale(
    engine: Engine, spec: GenerationSpec, tracker: Tracker, image: Image.Image, target: tuple[int, int]
) -> list[Image.Image]:
    loaded = engine.models.get(spec.model)
    pipe = loaded.pipeline("img2img")
    width, height = max(8, image.width // 8 * 8), max(8, image.height // 8 * 8)
    if (width, height) != image.size:
        image = image.resize((width, height), Image.Resampling.LANCZOS)
    with engine.job_components(loaded, pipe, spec), torch.inference_mode():
        pixels = pipe.image_processor.preprocess(image).to(pipe.device, pipe.vae.dtype)
        latents = pipe.vae.encode(pixels).latent_dist.mode() * pipe.vae.config.scaling_factor
    size = (target[1] // 8, target[0] // 8)
    latents = F.interpolate(latents, size=size, mode="bilinear", align_corners=False)  # A1111's "Latent"
    return engine.diffuse(spec, "img2img", tracker, seeds=[spec.seed], image=latents, strength=spec.strength)
