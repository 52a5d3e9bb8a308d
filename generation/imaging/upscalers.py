"""Super-resolution upscalers (ESRGAN, Real-ESRGAN, SwinIR, HAT, ... : whatever spandrel detects), run in tiles.

A model file is a `.safetensors` state dict; spandrel reads it and detects the architecture and its
hyperparameters from the keys and shapes. Pickle files (.pth/.pt/.ckpt/.bin) are refused before
anything opens them: unpickling can run code hidden in the file (spandrel's restricted unpickler
narrows that, but sdbot's rule is "never a pickle").

Memory: a super-resolution network's activations are `num_feat` channels at up to the *output*
resolution, so a 1024 px image through a 4x model needs gigabytes untiled. `upscale` therefore runs
the model on overlapping tiles of at most `tile` input pixels, one at a time, and cross-fades the
overlaps with linear weights. Only the tile travels to the device; the output is accumulated on the
CPU, so device memory is bounded by the tile size whatever the image size. The overlap hides the
seams: the pixels nearest a tile's cut edges, where the network saw zero padding instead of the
neighbouring image, get no weight, so with an overlap wider than the network's effective receptive
field the tiled result matches the untiled one up to rounding (see `_spans`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from generation.errors import PICKLE_SUFFIXES, EngineUserError, JobCancelled, ModelLoadError

log = logging.getLogger(__name__)

_PURPOSES = {
    "FaceSR": "a face restoration model (GFPGAN/CodeFormer style), which restores faces but does not upscale images",
    "Restoration": "a 1x restoration model (denoising, deblurring, JPEG artefacts), which does not enlarge images",
    "Inpainting": "an inpainting model",
}


@dataclass
class Upscaler:
    name: str  # display name, e.g. the file stem
    scale: int  # the model's native scale
    architecture: str  # spandrel's architecture id, e.g. "ESRGAN", "SwinIR"
    descriptor: Any  # spandrel ImageModelDescriptor, on its device, eval mode

    def upscale(
        self,
        image: Image.Image,
        factor: float,
        *,
        tile: int | None = 512,
        overlap: int = 32,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> Image.Image:
        """`image` enlarged to exactly (round(w * factor), round(h * factor)), RGB.

        The model runs as often as needed to reach the factor (a 2x model twice for 4x, as A1111
        does); a result larger than asked is reduced with Lanczos. `tile=None` runs each pass on the
        whole image at once. Raises JobCancelled when `should_stop()` turns true (checked before
        every tile), EngineUserError when the device runs out of memory even with smaller tiles.
        """
        if factor < 1:
            raise ValueError(f"an upscale factor is at least 1, not {factor}")
        if self.scale < 2:
            raise ValueError(f"{self.name} is a {self.scale}x model: it cannot enlarge images")
        if tile is not None and (tile < 8 or overlap < 0 or 2 * overlap > tile):
            raise ValueError(f"tile {tile} with overlap {overlap}: need tile >= 8 and 0 <= overlap <= tile / 2")
        from spandrel import ModelTiling

        if self.descriptor.tiling == ModelTiling.INTERNAL:
            tile = None  # the model tiles (or needs the whole picture) itself
        width, height = image.size
        target = (max(1, round(width * factor)), max(1, round(height * factor)))
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        if target == rgb.size:
            return rgb.copy()
        with torch.inference_mode():
            pixels = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1).contiguous()
            current = pixels.unsqueeze(0).float().div_(255)
            del pixels
            while current.shape[-1] < target[0] or current.shape[-2] < target[1]:
                current, tile, overlap = self._pass(current, tile, overlap, should_stop)
            array = current[0].clamp_(0, 1).mul_(255).round_().to(torch.uint8).permute(1, 2, 0).numpy()
        result = Image.fromarray(np.ascontiguousarray(array), "RGB")
        return result if result.size == target else result.resize(target, Image.Resampling.LANCZOS)

    def _pass(
        self, image: torch.Tensor, tile: int | None, overlap: int, should_stop: Callable[[], bool]
    ) -> tuple[torch.Tensor, int | None, int]:
        """One run of the model over `image`; on out-of-memory, one retry with tiles half as big.
        Returns the result and the tile size and overlap that worked, which later passes keep."""
        try:
            return self._run(image, tile, overlap, should_stop), tile, overlap
        except torch.OutOfMemoryError:
            pass  # handled outside the except block, whose traceback would keep the failed tiles' tensors alive
        self._free()
        size = f"{image.shape[-1]}x{image.shape[-2]}"
        if tile is None or tile // 2 < 8:
            how = "in one piece; run it in tiles" if tile is None else f"even in {tile} px tiles"
            raise EngineUserError(f"the device ran out of memory upscaling a {size} image with {self.name} {how}.")
        smaller, overlap = tile // 2, min(overlap, tile // 4)
        log.warning("upscaler %s: out of memory with %d px tiles on a %s image, retrying with %d px", self.name, tile, size, smaller)
        try:
            return self._run(image, smaller, overlap, should_stop), smaller, overlap
        except torch.OutOfMemoryError:
            pass
        self._free()
        raise EngineUserError(
            f"the device ran out of memory upscaling a {size} image with {self.name}, even in {smaller} px tiles. "
            "Try again when the GPU is less busy, or upscale a smaller image."
        )

    def _run(self, image: torch.Tensor, tile: int | None, overlap: int, should_stop: Callable[[], bool]) -> torch.Tensor:
        if tile is None:
            if should_stop():
                raise JobCancelled()
            return self._model(image)
        # Tiles that meet the size requirements themselves need no padding; only a tile cut short
        # by a small image is padded (reflect, then replicate) and cropped back by spandrel's __call__.
        requirements = self.descriptor.size_requirements
        align, minimum = requirements.multiple_of, requirements.minimum
        tile = math.ceil(max(tile, minimum) / align) * align
        _, channels, height, width = image.shape
        s = self.scale
        rows = _spans(height, tile, overlap, s, align, minimum)
        cols = _spans(width, tile, overlap, s, align, minimum)
        out = torch.zeros(1, channels, height * s, width * s)  # on the CPU: device memory stays one tile's
        for top, tile_h, row_weight in rows:
            for left, tile_w, col_weight in cols:
                if should_stop():
                    raise JobCancelled()
                result = self._model(image[..., top : top + tile_h, left : left + tile_w])
                weight = row_weight[:, None] * col_weight[None, :]
                out[..., top * s : (top + tile_h) * s, left * s : (left + tile_w) * s].addcmul_(result, weight)
        return out

    def _model(self, image: torch.Tensor) -> torch.Tensor:
        """The model on one CPU float32 (1, 3, h, w) tensor in [0, 1]; the result back on the CPU.
        spandrel's __call__ pads to the size requirements, crops back and clamps to [0, 1]."""
        descriptor = self.descriptor
        result = descriptor(image.to(descriptor.device, descriptor.dtype).contiguous())
        return result.float().cpu()

    def _free(self) -> None:
        if self.descriptor.device.type == "cuda":
            torch.cuda.empty_cache()


def _starts(length: int, tile: int, overlap: int, align: int) -> list[int]:
    """Tile starts along an axis longer than `tile`: multiples of `align`, spread evenly, every
    overlap at least `overlap` (given align <= tile - overlap), the last tile flush with the
    border or, when that start is off the grid, the first grid point after it (and shorter)."""
    step = max(align, (tile - overlap) // align * align)
    last = math.ceil((length - tile) / align) * align
    count = math.ceil(last / step) + 1
    return [round(i * last / (count - 1) / align) * align for i in range(count)]


def _spans(length: int, tile: int, overlap: int, scale: int, align: int, minimum: int) -> list[tuple[int, int, torch.Tensor]]:
    """Tiles along one axis: (start, size, weights over the tile's output pixels).

    Starts are multiples of `align` (the model's `multiple_of`), so a model that pixel-unshuffles
    or downsamples inside sees the same pixel grid in a tile as in the whole image; a tile at an
    odd offset would group other pixels and differ everywhere, not just near its edges. The last
    tile may be shorter than the others; spandrel pads it as it pads the whole image there.
    As few tiles as `tile` allows, each no larger than that count needs: 1024 px in 512 px tiles
    with 32 px overlap takes 3 tiles a side, and 3 of 363 px do half the work of 3 of 512.

    Where a tile shares an edge with a neighbour, its weight is 0 over the outer half of the
    overlap (the pixels nearest the cut, computed from zero padding instead of the real image)
    and rises linearly over the inner half; at the image border it stays 1, as untiled. Measured
    with random ESRGAN/SwinIR weights, dropping the outer half brings the tiled result from up to
    5/255 off the untiled one to rounding (1/255); a ramp from the very edge keeps some of the
    cut's error. The weights are divided by their sum over all tiles, so the tiles covering a
    pixel add up to 1, and, the grid being separable, so do their 2-D products."""
    if length <= tile:
        return [(0, length, torch.ones(length * scale))]
    count = len(_starts(length, tile, overlap, align))
    while tile - align >= max(minimum, 2 * overlap, 1) and len(_starts(length, tile - align, overlap, align)) == count:
        tile -= align
    starts = _starts(length, tile, overlap, align)
    overlap = min(overlap, tile - max(align, (tile - overlap) // align * align))  # smaller only if `align` forces it
    ramp_len = overlap * scale
    cut = ramp_len // 2
    # +0.5: the first pixel after the cut already has a little weight, so no pixel is left without any
    ramp = ((torch.arange(ramp_len, dtype=torch.float32) - cut + 0.5) / max(ramp_len - cut, 1)).clamp_(0, 1)
    spans = []
    total = torch.zeros(length * scale)
    for start in starts:
        size = min(tile, length - start)
        weight = torch.ones(size * scale)
        if start > 0 and ramp_len:
            weight[:ramp_len] = ramp
        if start + size < length and ramp_len:
            weight[-ramp_len:] = torch.minimum(weight[-ramp_len:], ramp.flip(0))
        total[start * scale : (start + size) * scale] += weight
        spans.append((start, size, weight))
    return [(start, size, weight / total[start * scale : (start + size) * scale]) for start, size, weight in spans]


def load_upscaler(path: str | Path, device: torch.device, dtype: torch.dtype, name: str | None = None) -> Upscaler:
    """Load a super-resolution model from a `.safetensors` file, architecture detected by spandrel.

    Half precision is used only where the model supports it and the device is CUDA (on the CPU
    fp16/bf16 convolutions are slow or missing); otherwise float32. Raises ModelLoadError with a
    message for the user when the file is missing, a pickle, unreadable or not an SR model."""
    from safetensors import SafetensorError
    from spandrel import ImageModelDescriptor, ModelLoader, UnsupportedModelError

    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise ModelLoadError(
            f"`{path.name}` is a pickle file ({suffix}); loading one can run code hidden in it, so sdbot only loads "
            'upscalers as .safetensors. Convert it once on a machine you trust: `python -c "import torch, '
            f"safetensors.torch as st; st.save_file(torch.load('{path.name}', weights_only=True), "
            f"'{path.stem}.safetensors')\"` (if that complains about a nested dict, save the inner "
            "`params_ema` or `params` dict)."
        )
    if suffix != ".safetensors":
        raise ModelLoadError(f"`{path.name}` is not a .safetensors file; sdbot loads upscalers only from .safetensors.")
    if not path.is_file():
        raise ModelLoadError(f"the upscaler file `{path}` does not exist.")
    not_sr = f"`{path.name}` is not a super-resolution model spandrel knows"
    try:
        descriptor = ModelLoader(device=device).load_from_file(path)
    except UnsupportedModelError:
        raise ModelLoadError(
            f"{not_sr}: no architecture it supports (ESRGAN, Real-ESRGAN, SwinIR, HAT, DAT, ...) matches its weights."
        ) from None
    except SafetensorError as error:
        raise ModelLoadError(f"`{path.name}` is not a readable .safetensors file ({error}).") from None
    except torch.OutOfMemoryError:
        raise ModelLoadError(f"not enough device memory to load the upscaler `{path.name}`.") from None
    except Exception as error:  # detected, but the weights do not fit what the architecture expects
        raise ModelLoadError(f"{not_sr}: {type(error).__name__}: {error}") from error
    arch = descriptor.architecture.id
    if not isinstance(descriptor, ImageModelDescriptor) or descriptor.purpose != "SR":
        what = _PURPOSES.get(descriptor.purpose, f"a {descriptor.purpose} model")
        raise ModelLoadError(f"{not_sr}: it is {what} ({arch}).")
    if descriptor.scale < 2:
        raise ModelLoadError(f"{not_sr}: it is a {descriptor.scale}x {arch} model, which does not enlarge images.")
    if (descriptor.input_channels, descriptor.output_channels) != (3, 3):
        raise ModelLoadError(f"`{path.name}` works on {descriptor.input_channels}-channel images; sdbot upscales RGB (3 channels).")
    run_dtype = torch.float32
    if device.type == "cuda" and dtype == torch.float16 and descriptor.supports_half:
        run_dtype = torch.float16
    elif device.type == "cuda" and dtype == torch.bfloat16 and descriptor.supports_bfloat16:
        run_dtype = torch.bfloat16
    descriptor.to(device=device, dtype=run_dtype).eval()
    upscaler = Upscaler(name or path.stem, descriptor.scale, arch, descriptor)
    tags = ", ".join(descriptor.tags)
    log.info("loaded upscaler %s: %s %dx (%s) on %s, %s", upscaler.name, arch, upscaler.scale, tags, device, run_dtype)
    return upscaler
