"""Pictures the way chat platforms take them: one grid image for a batch, and images fitted to a
platform's limits (bytes per file, pixels per side). Shared by the chat adapters.

The PNGs the engine writes stay untouched in the blob store; what is fitted here is only what a
chat shows. Fitting says what it did, so the adapter can tell the user.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from commands.types import ImageFile

GRID_GAP = 4  # pixels between the images of a grid
GRID_BACKGROUND = (24, 24, 24)
JPEG_QUALITIES = (92, 85, 75)


@dataclass(frozen=True)
class Picture:
    data: bytes
    filename: str
    width: int
    height: int
    note: str | None = None  # what fitting changed, in words; None when the file went as it was


def picture_of(images: Sequence[ImageFile], stem: str) -> Picture:
    """What a message shows of a job's images: the one image as it is, or a grid of several."""
    if len(images) == 1:
        image = images[0]  # its size is known: no need to open the file for it
        return Picture(image.path.read_bytes(), f"{stem}-{image.index + 1}-seed{image.seed}.png", image.width, image.height)
    return grid([image.path for image in images], f"{stem}-grid.png")


def grid(paths: Sequence[Path], filename: str) -> Picture:
    """The images side by side in a near-square grid (2x2 for four), in order, as one PNG."""
    images = [Image.open(path) for path in paths]
    try:
        columns = math.ceil(math.sqrt(len(images)))
        rows = math.ceil(len(images) / columns)
        cell_w = max(image.width for image in images)
        cell_h = max(image.height for image in images)
        width = columns * cell_w + (columns - 1) * GRID_GAP
        height = rows * cell_h + (rows - 1) * GRID_GAP
        canvas = Image.new("RGB", (width, height), GRID_BACKGROUND)
        for i, image in enumerate(images):
            row, column = divmod(i, columns)
            canvas.paste(image.convert("RGB"), (column * (cell_w + GRID_GAP), row * (cell_h + GRID_GAP)))
    finally:
        for image in images:
            image.close()
    out = io.BytesIO()
    canvas.save(out, format="PNG")
    return Picture(out.getvalue(), filename, width, height)


def fit(picture: Picture, *, max_bytes: int, max_side_sum: int | None = None, max_side: int | None = None) -> Picture:
    """`picture` within the limits: as it is when it fits; else downscaled to the side limits,
    then re-encoded as JPEG at falling quality, then downscaled further until it fits."""
    scale = 1.0
    if max_side_sum and picture.width + picture.height > max_side_sum:
        scale = min(scale, max_side_sum / (picture.width + picture.height))
    if max_side and max(picture.width, picture.height) > max_side:
        scale = min(scale, max_side / max(picture.width, picture.height))
    if scale == 1.0 and len(picture.data) <= max_bytes:
        return picture
    with Image.open(io.BytesIO(picture.data)) as opened:
        image = opened.convert("RGB")
    stem = picture.filename.rsplit(".", 1)[0]
    while True:
        size = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
        resized = image if size == image.size else image.resize(size, Image.Resampling.LANCZOS)
        for quality in JPEG_QUALITIES:
            out = io.BytesIO()
            resized.save(out, format="JPEG", quality=quality)
            if out.tell() <= max_bytes:
                changes = ["re-encoded as JPEG"]
                if size != image.size:
                    changes.append(f"downscaled to {size[0]}x{size[1]}")
                note = f"The picture was {' and '.join(changes)} to fit this chat's limits."
                return Picture(out.getvalue(), f"{stem}.jpg", size[0], size[1], note)
        scale *= 0.75
