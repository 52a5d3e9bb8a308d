"""Inpainting (`/inpaint`) and outpainting (`/zoom`, `/pan`): repaint a masked region of an image.

Both end the same way, and the rule that matters most to users holds for both: pixels outside
the (feathered) mask are the input's pixels, bit for bit. The model only ever sees a working copy;
its output is pasted back through the feathered mask (`segment.composite`), so the VAE round
trip never touches what the user did not ask to change. That is also why the working size may
differ from the image's: a person's 1000x750 photo is repainted at a size the model likes and
the result is scaled back before it is pasted.

- inpaint: the mask comes from the job (a box or an uploaded mask, stored as a blob) or from
  words (`--select`, CLIPSeg). "Only masked" works on a padded crop around the mask at the
  model's native size, so a small region gets the model's full resolution (A1111's option).
- outpaint: the canvas grows (zoom: all sides; pan: one side), the new area is pre-filled from
  the picture's edges (OpenCV's Telea inpainting at low resolution, blurred, plus a little noise)
  so the model starts from plausible colours, and the new area is repainted. The feathered band
  lies in the new area only, so the original stays intact to the last pixel.

diffusers' inpaint pipeline works with ordinary (4-channel) models by re-imposing the noised
original outside the mask at every step, and with dedicated inpainting (9-channel) models.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from generation.engine import Engine, Tracker
from generation.errors import EngineUserError
from generation.imaging.segment import blur_mask, composite, crop_region, mask_box, working_size
from generation.spec import GenerationSpec

FILL_SIDE = 128  # the pre-fill is computed at this size: Telea inpainting is slow on big regions
FILL_NOISE = 12  # standard deviation (of 255) of the noise added to the fill


def inpaint(engine: Engine, spec: GenerationSpec, tracker: Tracker) -> list[Image.Image]:
    original = engine.init_image(spec)
    soft = blur_mask(job_mask(engine, spec, original), spec.mask_blur)
    return repaint(engine, spec, tracker, original, soft)


def job_mask(engine: Engine, spec: GenerationSpec, original: Image.Image) -> Image.Image:
    """The job's region of `original` as an 'L' mask of its size (white = repaint), unblurred: the
    mask blob (a box or an uploaded mask) or the words of `--select`, segmented. /inpaint's and
    a masked /edit's (generation.jobs.instruct)."""
    if spec.select:
        mask = engine.tools.segment().mask(original, spec.select)
        if mask_box(mask) is None:
            raise EngineUserError(
                f"I couldn't find “{spec.select}” in the picture, so there is nothing to repaint. "
                "Try other words, or give the region with `--box x,y,w,h`."
            )
    else:
        assert spec.mask is not None
        mask = engine.blob_image(spec.mask, "L")
        if mask.size != original.size:
            mask = mask.resize(original.size, Image.Resampling.NEAREST)
    if mask_box(mask) is None:
        raise EngineUserError("The mask is empty (all black), so there is nothing to repaint. White marks what to repaint.")
    return mask


def repaint(engine: Engine, spec: GenerationSpec, tracker: Tracker, original: Image.Image, soft: Image.Image) -> list[Image.Image]:
    """Repaint where `soft` (a feathered 'L' mask the size of `original`) is above zero and paste
    the result back through it."""
    region = soft.point(lambda value: 255 if value > 0 else 0)  # the model repaints the whole blend band
    if spec.only_masked:
        box = mask_box(region)
        assert box is not None
        native = engine.native_size(spec)
        crop = crop_region(box, original.size, spec.only_masked_padding, native)
        work_size = working_size(crop, native, engine.size_multiple(spec))
    else:
        crop = (0, 0, original.width, original.height)
        work_size = (spec.width, spec.height)
    image_in = original.crop(crop).resize(work_size, Image.Resampling.LANCZOS)
    mask_in = region.crop(crop).resize(work_size, Image.Resampling.NEAREST)
    # Control maps are at the job's size; the crop is in the picture's pixels.
    sx, sy = spec.width / original.width, spec.height / original.height
    control_region = (round(crop[0] * sx), round(crop[1] * sy), round(crop[2] * sx), round(crop[3] * sy))
    painted = engine.diffuse(
        spec,
        "inpaint",
        tracker,
        image=image_in,
        mask_image=mask_in,
        width=work_size[0],
        height=work_size[1],
        strength=spec.strength,
        control_region=control_region if spec.only_masked else None,
    )
    results = []
    for image in painted:
        whole = original.copy()
        whole.paste(image.resize((crop[2] - crop[0], crop[3] - crop[1]), Image.Resampling.LANCZOS), crop[:2])
        results.append(composite(original, whole, soft))
    return results


def outpaint(engine: Engine, spec: GenerationSpec, tracker: Tracker) -> list[Image.Image]:
    assert spec.placement is not None
    x, y, w, h = spec.placement
    inner = engine.init_image(spec)
    if inner.size != (w, h):  # scaled down to fit the pixel limit (the user was told)
        inner = inner.resize((w, h), Image.Resampling.LANCZOS)
    size = (spec.width, spec.height)
    canvas = prefill(inner, size, (x, y), seed=spec.seed)
    soft = outpaint_mask(size, (x, y, w, h), spec.mask_blur)
    return repaint(engine, spec, tracker, canvas, soft)


def outpaint_mask(size: tuple[int, int], placement: tuple[int, int, int, int], blur: int) -> Image.Image:
    """255 in the new area, 0 on the original, with the feathered band wholly in the new area:
    the keep-rectangle is grown by the feather's reach (`blur` pixels) first, then the original is
    zeroed (so the seam fades to the picture's own pixels without touching them)."""
    x, y, w, h = placement
    grow = blur
    mask = Image.new("L", size, 255)
    mask.paste(0, (max(0, x - grow), max(0, y - grow), min(size[0], x + w + grow), min(size[1], y + h + grow)))
    soft = blur_mask(mask, blur)
    soft.paste(0, (x, y, x + w, y + h))
    return soft


def prefill(inner: Image.Image, size: tuple[int, int], at: tuple[int, int], *, seed: int) -> Image.Image:
    """`inner` on a canvas of `size` at `at`, the new area filled with the picture's edges carried
    outwards (Telea inpainting at low resolution), blurred and lightly noised."""
    import cv2

    scale = min(1.0, FILL_SIDE / max(size))
    small = (max(8, round(size[0] * scale)), max(8, round(size[1] * scale)))
    canvas = Image.new("RGB", size, (0, 0, 0))
    canvas.paste(inner, at)
    known = Image.new("L", size, 255)
    known.paste(0, (at[0], at[1], at[0] + inner.width, at[1] + inner.height))
    small_image = np.asarray(canvas.resize(small, Image.Resampling.BOX))
    small_mask = np.asarray(known.resize(small, Image.Resampling.NEAREST))
    radius = max(3, round(max(small) / 16))
    filled = cv2.inpaint(np.ascontiguousarray(small_image), small_mask, radius, cv2.INPAINT_TELEA)
    fill = Image.fromarray(filled).resize(size, Image.Resampling.BICUBIC)
    fill = fill.filter(ImageFilter.GaussianBlur(max(2, max(size) // 64)))
    noise = np.random.default_rng(seed).normal(0, FILL_NOISE, (size[1], size[0], 3))
    fill = Image.fromarray(np.clip(np.asarray(fill, dtype=np.float64) + noise, 0, 255).astype(np.uint8))
    fill.paste(inner, at)
    return fill
