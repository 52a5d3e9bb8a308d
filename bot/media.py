"""Pictures and clips the way chat platforms take them: one grid image for a batch, images fitted
to a platform's limits (bytes per file, pixels per side), and clips fitted to its upload limit.
Shared by the chat adapters.

The PNGs, MP4s and GIFs the engine writes stay untouched in the blob store; what is fitted here is
only what a chat shows. Fitting says what it did, so the adapter can tell the user.

A clip (`clip_of`) goes as the first of these that fits:
1. its stored MP4, as it is;
2. an MP4 re-encoded from its frames (played as stored: ping-pong with `loop`) at each of
   CLIP_CRFS, then at CLIP_SHRINK_CRF with smaller sides (each try shrinks by the square root of
   how far over the limit the last one was, and at least by CLIP_SHRINK_STEP), the last try at
   MIN_CLIP_SIDE;
3. its stored GIF (or, without one, a GIF made from the frames), then GIFs re-encoded from the
   frames with smaller sides, the last at MIN_CLIP_SIDE. A GIF is far larger than an MP4 of the
   same frames, so in practice this is the stored GIF of a clip whose frames are gone.
4. else a `ClipError` whose message the adapter shows instead, with the poster.
A clip whose longer side is MIN_CLIP_SIDE or less is never downscaled.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from PIL import Image

from commands.frame.types import ImageFile, VideoFile
from commands.jobs.render import size_text
from generation.animation import video as encoder

GRID_GAP = 4  # pixels between the images of a grid
GRID_BACKGROUND = (24, 24, 24)
JPEG_QUALITIES = (92, 85, 75)
CLIP_CRFS = (23, 28)  # x264 quality of a re-encoded clip at full size (the stored one is 18); +5 ≈ half the bytes
CLIP_SHRINK_CRF = 28  # ... and once its sides shrink
CLIP_SHRINK_STEP = 0.75  # each smaller try has sides at most this fraction of the last
CLIP_SHRINK_MARGIN = 0.9  # aim this far under the limit when estimating the next size
MIN_CLIP_SIDE = 96  # a clip's longer side is never fitted below this: smaller is not worth watching


@dataclass(frozen=True)
class Picture:
    data: bytes
    filename: str
    width: int
    height: int
    note: str | None = None  # what fitting changed, in words; None when the file went as it was


def png_name(image: ImageFile, stem: str) -> str:
    """The file name an image of a job goes out under: `sdbot-12-2-seed43.png`."""
    return f"{stem}-{image.index + 1}-seed{image.seed}.png"


def picture_of(images: Sequence[ImageFile], stem: str) -> Picture:
    """What a message shows of a job's images: the one image as it is, or a grid of several."""
    if len(images) == 1:
        image = images[0]  # its size is known: no need to open the file for it
        return Picture(image.path.read_bytes(), png_name(image, stem), image.width, image.height)
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


@dataclass(frozen=True)
class Clip:
    data: bytes
    filename: str
    width: int
    height: int
    seconds: float
    kind: Literal["mp4", "gif"]
    note: str | None = None  # what fitting changed, in words; None when the stored MP4 went as it was


class ClipError(Exception):
    """No file of the clip can be sent here; `message` says so, to show instead."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def clip_of(video: VideoFile, *, max_bytes: int, stem: str = "sdbot-clip") -> Clip:
    """The clip as a file within `max_bytes` (the module's docstring has the order). Reads and may
    re-encode files: call it off the event loop."""
    stored = _read(video.mp4)
    if stored is not None and len(stored) <= max_bytes:
        width, height = encoder.frame_size(video.width, video.height)  # the MP4's sides are even
        return Clip(stored, f"{stem}.mp4", width, height, video.seconds, "mp4")
    frames = _frames(video)
    played = encoder.playback_frames(frames, video.loop) if frames else []
    if played:
        width, height = frames[0].size
        for crf in CLIP_CRFS:
            data = encoder.encode_mp4(played, video.fps, crf=crf)
            if len(data) <= max_bytes:
                size = encoder.frame_size(width, height)
                return Clip(
                    data, f"{stem}.mp4", *size, video.seconds, "mp4", "The clip was re-encoded at a lower quality to fit this chat's limit."
                )
        side = max(width, height)
        while (side := _smaller(side, len(data), max_bytes)) is not None:
            data = encoder.encode_mp4(played, video.fps, crf=CLIP_SHRINK_CRF, max_side=side)
            if len(data) <= max_bytes:
                size = encoder.frame_size(width, height, max_side=side)
                return Clip(
                    data,
                    f"{stem}.mp4",
                    *size,
                    video.seconds,
                    "mp4",
                    f"The clip was downscaled to {size[0]}x{size[1]} to fit this chat's limit.",
                )
    gif = _read(video.gif) if video.gif is not None else None
    note = "The clip is sent as a GIF: no MP4 of it fits this chat's limit."
    if gif is not None and len(gif) <= max_bytes:
        return Clip(gif, f"{stem}.gif", video.width, video.height, video.seconds, "gif", note)
    if played:
        width, height = frames[0].size
        data = gif if gif is not None else encoder.encode_gif(played, video.fps)
        if gif is None and len(data) <= max_bytes:  # no stored GIF: one made from the frames, at full size
            return Clip(data, f"{stem}.gif", width, height, video.seconds, "gif", note)
        side = max(width, height)
        while (side := _smaller(side, len(data), max_bytes)) is not None:
            data = encoder.encode_gif(played, video.fps, max_side=side)
            if len(data) <= max_bytes:
                size = encoder.frame_size(width, height, max_side=side, even=False)
                return Clip(
                    data,
                    f"{stem}.gif",
                    *size,
                    video.seconds,
                    "gif",
                    f"The clip is sent as a GIF downscaled to {size[0]}x{size[1]}: no MP4 of it fits this chat's limit.",
                )
    if stored is None and gif is None and not played:
        raise ClipError("I can't find this clip's files any more. Please make it again.")
    raise ClipError(
        f"The clip isn't attached: even made smaller it is over the {size_text(max_bytes)} I may send here. "
        "/frames sends its frames as files."
    )


def _smaller(side: int, size: int, max_bytes: int) -> int | None:
    """The next longer side to try after one of `side` pixels came out `size` bytes: bytes grow
    with pixels, so sides shrink by the square root of how far over it was (and at least by
    CLIP_SHRINK_STEP), never below MIN_CLIP_SIDE, which is tried last; None after that."""
    if side <= MIN_CLIP_SIDE:
        return None
    factor = min(CLIP_SHRINK_STEP, math.sqrt(max_bytes / size) * CLIP_SHRINK_MARGIN)
    return max(MIN_CLIP_SIDE, int(side * factor))


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _frames(video: VideoFile) -> list[Image.Image]:
    """The clip's frames as RGB pictures; none when one of them is gone or unreadable."""
    frames = []
    try:
        for path in video.frames:
            with Image.open(path) as image:
                frames.append(image.convert("RGB"))
    except OSError:
        return []
    return frames
