"""Text-prompted masks for `/inpaint --select WORDS`, and the mask utilities inpainting needs.

`Segmenter` wraps CLIPSeg (transformers' CLIPSegForImageSegmentation + CLIPSegProcessor, e.g.
CIDAS/clipseg-rd64-refined): the image is squashed to 352x352, CLIPSeg predicts one logit per
pixel for a phrase, and the sigmoid of it is resized back to the image and thresholded. Several
comma-separated phrases ("hat, scarf") are segmented one by one and OR-ed. Masks are 'L' images,
255 = repaint, as everywhere in sdbot.

The utilities are A1111's: mask blur (a Gaussian, counted by its reach in pixels), a composite that leaves the
unmasked pixels bit-identical, and "inpaint only masked" (`crop_region` + `working_size`: repaint a
padded crop around the mask at the model's native resolution, then paste it back).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from generation.errors import EngineUserError, ModelLoadError
from generation.models.hf_source import Source, explain, resolve
from generation.spec import mask_blur_sigma

log = logging.getLogger(__name__)

SEGMENTER = Source("SDBOT_SEGMENTER", "segmenter", "CIDAS/clipseg-rd64-refined", "CLIPSegForImageSegmentation")
MAX_ASPECT = 2.0  # "only masked" crops are grown towards at most 2:1; SD draws badly beyond that


class Segmenter:
    """A loaded CLIPSeg. Not thread-safe by design: the engine calls it from its one thread."""

    def __init__(self, model: Any, processor: Any, device: torch.device, source: str):
        self.model = model
        self.processor = processor
        self.device = device
        self.source = source

    def probabilities(self, image: Image.Image, words: str) -> np.ndarray:
        """float64 (height, width): per pixel, the highest probability that it shows one of `words`."""
        phrases = [phrase.strip() for phrase in words.split(",") if phrase.strip()]
        if not phrases:
            raise EngineUserError("say what to select, for example `--select hat, scarf`.")
        # The processor squashes to 352x352 (no crop), so resizing the logits back to the image's
        # size undoes it exactly; RGB first, since RGBA, L and P uploads would change the channels.
        pixels = self.processor.image_processor(images=[image.convert("RGB")], return_tensors="pt")["pixel_values"]
        pixels = pixels.to(self.device, dtype=self.model.dtype)
        limit = self.model.config.text_config.max_position_embeddings  # 77: longer phrases are cut
        best: np.ndarray | None = None
        with torch.inference_mode():
            # One phrase per pass, not a padded batch: a phrase then gets the same pixels whether
            # asked alone or with others (batched kernels may round differently).
            for phrase in phrases:
                tokens = self.processor.tokenizer([phrase], truncation=True, max_length=limit, return_tensors="pt")
                logits = self.model(pixel_values=pixels, **tokens.to(self.device)).logits
                # float64 on the CPU: float32's sigmoid reaches exactly 0 near logit -88 and 1 near
                # +17, which would break "threshold 0 selects all, 1 selects nothing".
                probs = logits.reshape(1, 1, *logits.shape[-2:]).to("cpu", torch.float64).sigmoid()
                # Sigmoid, then resize (as CLIPSeg's authors do); antialias matters only when shrinking.
                resized = torch.nn.functional.interpolate(
                    probs, size=(image.height, image.width), mode="bilinear", align_corners=False, antialias=True
                )[0, 0].numpy()
                # The maximum after resizing, so thresholding it is exactly the OR of each phrase's
                # mask (a maximum before the resize would not be: resizing averages neighbours).
                best = resized if best is None else np.maximum(best, resized)
        assert best is not None
        return best

    def mask(self, image: Image.Image, words: str, *, threshold: float = 0.4, dilate: int = 0) -> Image.Image:
        """'L' mask the size of `image`: 255 where `words` are, 0 elsewhere (white = repaint).

        A pixel is selected where its probability is above `threshold` (0 selects every pixel, 1
        none); `dilate` then grows the selection by that many pixels in every direction.
        """
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], not {threshold}")
        if dilate < 0:
            raise ValueError(f"dilate must be >= 0, not {dilate}")
        selected = (self.probabilities(image, words) > threshold).astype(np.uint8) * 255
        if dilate:
            import cv2

            # An ellipse of radius `dilate` grows the mask evenly in all directions (a square
            # kernel would grow it further along the diagonals).
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate + 1, 2 * dilate + 1))
            selected = cv2.dilate(selected, kernel)
        return Image.fromarray(selected)  # 2-D uint8: mode L


def load_segmenter(source: str | Path, device: torch.device) -> Segmenter:
    """Load CLIPSeg from a folder saved with `save_pretrained` or a Hub id; safetensors only."""
    from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # progress bars on stderr are noise in a bot's log
    name = resolve(source, SEGMENTER)
    log.info("loading segmenter %s (%s)", name, device)
    try:
        # float32 everywhere: CLIPSeg is small (~150M parameters) and its masks come from
        # thresholding probabilities, which half precision would shift.
        model = CLIPSegForImageSegmentation.from_pretrained(name, use_safetensors=True, dtype=torch.float32, local_files_only=True)
        processor = CLIPSegProcessor.from_pretrained(name, local_files_only=True)
    except Exception as error:  # turn library errors into advice
        raise ModelLoadError(explain(name, error, SEGMENTER)) from error
    return Segmenter(model.to(device).eval(), processor, device, name)


def blur_mask(mask: Image.Image, reach: int) -> Image.Image:
    """Feather a mask so that the blend reaches exactly `reach` pixels on each side of its edge:
    a Gaussian of sigma `reach / 2.5` whose kernel is 2 * reach + 1 wide. Pixels farther than
    `reach` (in x or y) from the mask stay exactly 0, so they come back bit for bit; 0 leaves the
    mask as it is.

    This is A1111's mask blur (a kernel of about 2.5 sigma each side) counted in pixels of reach
    instead of in sigma, so that `--blur N` means what a person reads: A1111's "mask blur 4" is
    our 10 (the same kernel), and the PNG records A1111's number (`spec.mask_blur_sigma`)."""
    mask = mask.convert("L")
    if reach <= 0:
        return mask
    import cv2

    return Image.fromarray(cv2.GaussianBlur(np.asarray(mask), (2 * reach + 1, 2 * reach + 1), mask_blur_sigma(reach)))


def composite(original: Image.Image, generated: Image.Image, mask: Image.Image) -> Image.Image:
    """`generated` where the mask is 255, `original` where it is 0, a blend in between.

    Integer arithmetic, rounded: (o * (255 - m) + g * m + 127) // 255 is exactly o at m = 0 and g at
    m = 255, so pixels outside the mask come back bit-identical.
    """
    if generated.size != original.size or mask.size != original.size:
        raise ValueError(f"sizes differ: original {original.size}, generated {generated.size}, mask {mask.size}")
    mode = original.mode if original.mode in ("L", "RGB", "RGBA") else "RGB"
    base = np.asarray(original.convert(mode), dtype=np.uint32)
    new = np.asarray(generated.convert(mode), dtype=np.uint32)
    alpha = np.asarray(mask.convert("L"), dtype=np.uint32)
    if base.ndim == 3:
        alpha = alpha[..., None]
    mixed = (base * (255 - alpha) + new * alpha + 127) // 255
    return Image.fromarray(mixed.astype(np.uint8))  # L, RGB or RGBA from the shape


def mask_box(mask: Image.Image) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) of the mask's nonzero pixels, right and bottom exclusive; None if it is empty."""
    return mask.convert("L").getbbox()


def crop_region(
    box: tuple[int, int, int, int], image_size: tuple[int, int], padding: int, target: int, multiple: int = 8
) -> tuple[int, int, int, int]:
    """The crop for A1111's "inpaint only masked": `box` padded by `padding` (clamped to the image),
    grown on its short side towards the aspect of the working size (see `working_size`; at most
    `MAX_ASPECT`), sides rounded up to a multiple of `multiple`, centred on the box and shifted to
    stay inside the image. A small mask gives a small crop, which the engine then repaints at about
    `target` x `target` pixels. A side is not a multiple only where it spans a whole image side that
    is not one. The crop always contains the padded box.
    """
    width, height = image_size
    x0, y0, x1, y1 = max(0, box[0]), max(0, box[1]), min(width, box[2]), min(height, box[3])
    if x1 <= x0 or y1 <= y0 or padding < 0 or target < multiple or multiple < 1:
        raise ValueError(f"bad crop request: box {box}, image {image_size}, padding {padding}, target {target}")
    x0, y0, x1, y1 = max(0, x0 - padding), max(0, y0 - padding), min(width, x1 + padding), min(height, y1 + padding)
    aspect = working_size((x0, y0, x1, y1), target, multiple)
    ratio = min(max(aspect[0] / aspect[1], 1 / MAX_ASPECT), MAX_ASPECT)
    crop_w = _fit(max(x1 - x0, math.ceil((y1 - y0) * ratio)), x1 - x0, width, multiple)
    crop_h = _fit(max(y1 - y0, math.ceil((x1 - x0) / ratio)), y1 - y0, height, multiple)
    left = min(max(x0 - (crop_w - (x1 - x0)) // 2, 0), width - crop_w)
    top = min(max(y0 - (crop_h - (y1 - y0)) // 2, 0), height - crop_h)
    return left, top, left + crop_w, top + crop_h


def working_size(box: tuple[int, int, int, int], target: int, multiple: int = 8) -> tuple[int, int]:
    """(width, height) to repaint `box` at: its aspect, about `target` * `target` pixels, both sides
    multiples of `multiple` (SD's latents are 1/8 of the image)."""
    box_w, box_h = box[2] - box[0], box[3] - box[1]
    scale = target / math.sqrt(box_w * box_h)
    return (
        max(multiple, round(box_w * scale / multiple) * multiple),
        max(multiple, round(box_h * scale / multiple) * multiple),
    )


def _fit(wanted: int, least: int, limit: int, multiple: int) -> int:
    """`wanted` rounded up to a multiple, but no more than `limit` and never less than `least`."""
    side = math.ceil(wanted / multiple) * multiple
    if side <= limit:
        return side
    floor = limit // multiple * multiple
    return floor if floor >= least else limit
