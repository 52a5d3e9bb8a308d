"""Live previews: the picture a job is drawing, decoded cheaply from the latents between steps.

`Previewer.step` is called by the engine's step callback on the engine thread. At most every
`seconds` (SDBOT_PREVIEW_SECONDS) it turns the step's latents into one small JPEG (a grid for a
batch, the middle frame of a clip; at most `MAX_SIDE` px a side, a few KB) and hands it to the
`sink` the worker set for the running task (`Previewer.showing`), which the heartbeat stores with
the job's progress. Decoding, by `mode` (SDBOT_PREVIEW):

- `linear`: the family's fixed latent-to-RGB projection (`Family.preview`, declared per VAE in
  `generation.models.families.latent_rgb`), a matrix product on the latents: well under a
  millisecond, at 1/8 of the picture's size;
- `taesd`: a tiny autoencoder (`AutoencoderTiny`, TAESD/TAESDXL/TAEF1-style weights) configured
  per family (SDBOT_PREVIEW_MODELS), loaded once; a family without one falls back to `linear`;
- `off`: nothing.

The latents are unpacked first, from the shape the pipeline keeps them in (`unpack`): (batch,
channels, h, w) for SD, SD 3.5, Z-Image; (batch, channels, frames, h, w) for Wan and AnimateDiff;
(batch, tokens, features) where patches of `patch`² latent pixels are packed into tokens (FLUX.1,
Chroma, FLUX.2, Qwen-Image: 2x2; LTX-Video: one per token over frames x h x w). A preview never
fails a job: anything unexpected is logged once and the job draws on without previews.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image

from generation.models.families import Family
from generation.models.families.latent_rgb import LatentPreview, LatentRGB

log = logging.getLogger(__name__)

PreviewMode = Literal["off", "linear", "taesd"]
PreviewSink = Callable[[bytes], None]
MAX_SIDE = 256  # a preview's longest side, in pixels
JPEG_QUALITY = 70


def unpack(latents: torch.Tensor, layout: LatentPreview, size: tuple[int, int], frames: int = 0) -> torch.Tensor | None:
    """The latents as (batch, channels, h, w): a clip's middle latent frame, packed tokens laid
    back on their grid. `size` is the picture's (width, height), `frames` a clip's (0: a still).
    None when the tokens don't fit the picture's grid (a pipeline that adds tokens of its own)."""
    if latents.ndim == 4:
        return latents
    if latents.ndim == 5:  # (batch, channels, frames, h, w)
        return latents[:, :, latents.shape[2] // 2]
    if latents.ndim != 3:
        return None
    batch, tokens, features = latents.shape
    patch = layout.patch or 1
    if features % (patch * patch):
        return None
    channels = features // (patch * patch)
    latent_frames = (frames - 1) // layout.temporal + 1 if layout.temporal and frames else 1
    if tokens % latent_frames:
        return None
    grid = _grid(tokens // latent_frames, size)
    if grid is None:
        return None
    rows, cols = grid
    # tokens in (frame, row, col) order; each token's features in (channel, dy, dx) order
    x = latents.reshape(batch, latent_frames, rows, cols, channels, patch, patch)[:, latent_frames // 2]
    return x.permute(0, 3, 1, 4, 2, 5).reshape(batch, channels, rows * patch, cols * patch)


def _grid(cells: int, size: tuple[int, int]) -> tuple[int, int] | None:
    """Rows and columns of a token grid of `cells` tokens with the picture's aspect."""
    width, height = size
    guess = math.sqrt(cells * height / max(width, 1))
    for rows in (round(guess), math.floor(guess), math.ceil(guess)):
        if rows > 0 and cells % rows == 0:
            return rows, cells // rows
    return None


def linear_rgb(latents: torch.Tensor, table: LatentRGB | None) -> torch.Tensor:
    """(batch, channels, h, w) latents to (batch, h, w, 3) uint8 by a fixed projection: the
    family's fitted `table`, else the generic one (channel c adds to colour c mod 3, each picture
    stretched to its own range: its layout, not its colours)."""
    x = latents.float()
    channels = x.shape[1]
    if table is not None and table.channels == channels:
        factors = torch.tensor(table.factors, device=x.device)
        rgb = torch.einsum("bchw,cr->bhwr", x, factors) + torch.tensor(table.bias, device=x.device)
        return ((rgb + 1) * 127.5).clamp(0, 255).to(torch.uint8).cpu()
    factors = torch.zeros(channels, 3, device=x.device)
    for channel in range(channels):
        factors[channel, channel % 3] = (-1.0) ** (channel // 3)
    rgb = torch.einsum("bchw,cr->bhwr", x, factors)
    low = rgb.amin(dim=(1, 2, 3), keepdim=True)
    high = rgb.amax(dim=(1, 2, 3), keepdim=True)
    return ((rgb - low) / (high - low).clamp_min(1e-6) * 255).to(torch.uint8).cpu()


def taesd_rgb(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    """(batch, channels, h, w) latents through a tiny autoencoder to (batch, H, W, 3) uint8. Its
    weights are trained on the latents as the sampler holds them (scaled and shifted), so they go
    in as they are; its output is in [-1, 1]."""
    decoded = vae.decode(latents.to(device=vae.device, dtype=vae.dtype), return_dict=False)[0]
    return ((decoded.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()


def jpeg(pictures: torch.Tensor) -> bytes:
    """(batch, h, w, 3) uint8 as one small JPEG: the pictures side by side in a grid (a batch),
    fitted to MAX_SIDE."""
    images = [Image.fromarray(picture.numpy()) for picture in pictures]
    columns = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    width, height = images[0].size
    sheet = Image.new("RGB", (columns * width, rows * height))
    for index, image in enumerate(images):
        sheet.paste(image, ((index % columns) * width, (index // columns) * height))
    scale = MAX_SIDE / max(sheet.size)
    if scale < 1:
        sheet = sheet.resize((max(1, round(sheet.width * scale)), max(1, round(sheet.height * scale))), Image.Resampling.BILINEAR)
    elif scale >= 2:  # a 1/8-size linear preview: shown larger, in blocks, rather than as a speck
        factor = int(scale)
        sheet = sheet.resize((sheet.width * factor, sheet.height * factor), Image.Resampling.NEAREST)
    out = io.BytesIO()
    sheet.save(out, format="JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


class Previewer:
    """Makes a running job's previews on the engine thread, at most every `seconds`, and hands
    them to the sink of the task now running (set by the worker with `showing`)."""

    def __init__(
        self,
        mode: PreviewMode = "off",
        seconds: float = 1.5,
        models: Mapping[str, Path | str] | None = None,
        *,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.mode = mode
        self.seconds = seconds
        self.models = dict(models or {})  # family id -> a folder of AutoencoderTiny weights (taesd)
        self.device, self.dtype = device or torch.device("cpu"), dtype or torch.float32
        self.clock = clock
        self.sink: PreviewSink | None = None
        self._due: float | None = None  # when the next preview is due; None: at the first step
        self._tiny: dict[str, Any] = {}  # family id -> its loaded AutoencoderTiny
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    @property
    def wanted(self) -> bool:
        """Whether a pass should hand its latents to `step` (so the pipeline must pass them on)."""
        return self.mode != "off" and self.sink is not None

    @contextlib.contextmanager
    def showing(self, sink: PreviewSink) -> Iterator[None]:
        """Previews of the task run inside go to `sink`. The first comes `seconds` after its first
        step (not after loading the model), so a job quicker than that shows none."""
        self.sink, self._due = sink, None
        try:
            yield
        finally:
            self.sink = None

    def step(self, latents: Any, family: Family, size: tuple[int, int], frames: int = 0) -> None:
        """Between two steps: a preview of `latents` to the sink when one is due."""
        sink = self.sink
        if sink is None or self.mode == "off" or not isinstance(latents, torch.Tensor):
            return
        if self._due is None:
            self._due = self.clock() + self.seconds
        if self.clock() < self._due:
            return
        try:
            picture = self.make(latents, family, size, frames)
        except Exception:  # a preview is cosmetic: never fail the job for one
            self._warn(family.id, "could not make a preview", exc_info=True)
            picture = None
        self._due = self.clock() + self.seconds  # from the end of this one: a slow decode never runs back to back
        if picture is not None:
            sink(picture)

    def make(self, latents: torch.Tensor, family: Family, size: tuple[int, int], frames: int = 0) -> bytes | None:
        """One preview of `latents` as a JPEG; None when their layout can't be read."""
        with torch.inference_mode():
            flat = unpack(latents.detach(), family.preview, size, frames)
            if flat is None:
                self._warn(family.id, f"latents of shape {tuple(latents.shape)} don't fit a {size[0]}x{size[1]} picture")
                return None
            vae = self._tiny_model(family) if self.mode == "taesd" else None
            pictures = taesd_rgb(vae, flat) if vae is not None else linear_rgb(flat, family.preview.table(flat.shape[1]))
            return jpeg(pictures)

    def _tiny_model(self, family: Family) -> Any:
        """The family's tiny autoencoder, loaded on first use and kept; None (linear) without one."""
        folder = self.models.get(family.id)
        if folder is None:
            self._warn(family.id, "no tiny autoencoder is configured (SDBOT_PREVIEW_MODELS): linear previews")
            return None
        with self._lock:
            if family.id not in self._tiny:
                from diffusers import AutoencoderTiny

                vae = AutoencoderTiny.from_pretrained(str(folder), local_files_only=True, use_safetensors=True)
                self._tiny[family.id] = vae.to(device=self.device, dtype=self.dtype).eval()
            return self._tiny[family.id]

    def _warn(self, key: str, message: str, **kwargs: Any) -> None:
        if key + message not in self._warned:
            self._warned.add(key + message)
            log.warning("previews of %s: %s", key, message, **kwargs)
