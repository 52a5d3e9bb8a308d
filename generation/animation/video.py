"""Clips as files: frames → MP4 (H.264) and GIF, and uploaded videos → frames. Torch-free.

- `encode_mp4`: libx264 (in PyAV's wheels), yuv420p, even sides (odd ones are padded by one
  edge pixel), `movflags=+faststart` (the index first, so it plays while loading), no audio: a
  soundless MP4 is what Telegram shows as an autoplaying animation and Discord plays inline.
  Exactly one video frame per picture at a constant `fps`.
- `encode_gif`: Pillow, loops forever; GIF counts time in hundredths of a second, so a frame
  lasts round(100 / fps) of them (8 fps plays at 8.33), and at least 2 (browsers slow faster
  frames down to 10).
- `playback_frames`: a looping clip is played forward then backward (ping-pong) without showing
  the end frames twice, so it loops without a jump.
- `probe` / `read_frames`: an uploaded MP4, MOV, WebM (Matroska) or GIF, read with PyAV. Anything
  else, or anything broken, over-size or too many pixels per frame, is a `VideoError` whose
  message says what is wrong and what to send instead. The frame size is checked from the header
  before anything is decoded (see `_open`), and `read_frames` scales frames down to `max_pixels`
  as they are decoded, so a small file of huge frames never sits in memory at full size.

PyAV, Pillow and numpy are imported where they are used, so importing this module is cheap.
"""

from __future__ import annotations

import io
import math
import os
import struct
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from generation.errors import EngineUserError

if TYPE_CHECKING:
    from PIL import Image

DEFAULT_CRF = 18  # x264's constant rate factor: 18 looks lossless to most eyes; +6 halves the size
MAX_FRAME_PIXELS = 4096 * 4096  # an uploaded video's frames larger than this are refused (memory)
# FFmpeg's frame threads each hold a whole decoded frame (up to 64 MiB at MAX_FRAME_PIXELS), and its
# automatic count follows the machine's cores: a fixed few keep one upload's memory the same everywhere.
DECODE_THREADS = 2
# A frame time within this many seconds of a wanted time counts as at it (float rounding).
TIME_EPSILON = 1e-4
# Demuxers we read uploads with (FFmpeg's names) → what we call them; FFmpeg opens far more
# (a PNG is an `image2` "video"), which a chat user did not mean to send.
CONTAINERS = {"mov,mp4,m4a,3gp,3g2,mj2": "mp4", "matroska,webm": "webm", "gif": "gif"}
UNREADABLE = "That file isn't a video I can read. Send an MP4, WebM, MOV or GIF, please."


class VideoError(EngineUserError):
    """An uploaded video that cannot be used; `message` is polite and says what to send instead."""


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    frames: int
    fps: float
    seconds: float
    format: str  # "mp4", "mov", "webm", "mkv", "gif"


def playback_frames(frames: Sequence[Image.Image], loop: bool) -> list[Image.Image]:
    """The frames as played: with `loop`, forward then backward without repeating either end
    (1 2 3 4 → 1 2 3 4 3 2, and then 1 again), so 2n - 2 frames for n > 2."""
    frames = list(frames)
    if loop and len(frames) > 2:
        return frames + frames[-2:0:-1]
    return frames


def frame_size(width: int, height: int, *, max_side: int | None = None, even: bool = True) -> tuple[int, int]:
    """The size frames of width x height are encoded at: scaled down (never up) so the longer side
    is at most `max_side`, then (MP4) one pixel more on an odd side, as yuv420p needs even sides."""
    if max_side is not None:
        if max_side < 2:
            raise ValueError(f"max_side must be at least 2, not {max_side}")
        longest = max(width, height)
        if longest > max_side:
            scale = max_side / longest
            width, height = max(1, round(width * scale)), max(1, round(height * scale))
    return (width + width % 2, height + height % 2) if even else (width, height)


def _prepared(frames: Sequence[Image.Image], max_side: int | None, *, even: bool) -> list[Image.Image]:
    """RGB frames all of the first frame's size (scaled to max_side), padded to even sides if asked."""
    from PIL import Image

    if not frames:
        raise ValueError("a clip needs at least one frame")
    width, height = frame_size(*frames[0].size, max_side=max_side, even=False)
    padded = frame_size(width, height, even=even)
    out = []
    for frame in frames:
        picture = frame.convert("RGB")
        if picture.size != (width, height):
            picture = picture.resize((width, height), Image.Resampling.LANCZOS)
        if padded != (width, height):  # one more column/row, repeating the edge (no black line)
            grown = Image.new("RGB", padded)
            grown.paste(picture, (0, 0))
            if padded[0] > width:
                grown.paste(picture.crop((width - 1, 0, width, height)), (width, 0))
            if padded[1] > height:
                grown.paste(grown.crop((0, height - 1, padded[0], height)), (0, height))
            picture = grown
        out.append(picture)
    return out


def encode_mp4(
    frames: Sequence[Image.Image],
    fps: int,
    *,
    crf: int = DEFAULT_CRF,
    max_side: int | None = None,
    preset: str = "medium",
    comment: str | None = None,
) -> bytes:
    """An H.264 MP4 of exactly these frames at `fps`, ready to stream (moov before mdat).
    `comment`: text for the file's `comment` tag (a clip's parameters; `ffprobe` and players show it)."""
    import av

    pictures = _prepared(frames, max_side, even=True)
    width, height = pictures[0].size
    # faststart moves the index to the front in a second pass over the file, which FFmpeg can only
    # do on a real file: write to a temporary one and read it back.
    with tempfile.TemporaryDirectory(prefix="sdbot-mp4-") as folder:
        path = os.path.join(folder, "clip.mp4")
        with av.open(path, mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
            if comment:
                container.metadata["comment"] = comment
            stream = container.add_stream("libx264", rate=fps, options={"crf": str(crf), "preset": preset})
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            time_base = Fraction(1, fps)
            for index, picture in enumerate(pictures):
                frame = av.VideoFrame.from_image(picture)
                frame.pts, frame.time_base = index, time_base
                container.mux(stream.encode(frame))
            container.mux(stream.encode())  # flush the frames x264 still holds
        with open(path, "rb") as file:
            return file.read()


def encode_gif(frames: Sequence[Image.Image], fps: int, *, max_side: int | None = None) -> bytes:
    """An animated GIF of these frames that loops forever, each frame round(100 / fps) centiseconds."""
    pictures = _prepared(frames, max_side, even=False)
    buffer = io.BytesIO()
    # Pillow rounds durations to 10 ms; give it whole centiseconds so every frame lasts the same.
    duration = max(2, round(100 / fps)) * 10  # browsers slow GIF frames under 20 ms down to 100 ms
    pictures[0].save(buffer, format="GIF", save_all=True, append_images=pictures[1:], duration=duration, loop=0, optimize=False, disposal=1)
    return buffer.getvalue()


def _open(data: bytes, max_bytes: int | None) -> Any:
    """The container, once its frame size is known to be within MAX_FRAME_PIXELS; nothing decoded.

    Where the size comes from, per format: a GIF's is its logical screen (bytes 6-9), the canvas
    FFmpeg's GIF decoder draws every frame on (it clips larger frames to it), read here before FFmpeg
    sees the file. FFmpeg's demuxer reads the same field, but over FFmpeg's `max_pixels` (below) it
    reports 0x0, and Pillow refuses screens over ~179 MP with its own bomb error and grows its size
    for frames past the screen, which FFmpeg does not: the bytes are the reliable source. An MP4's or
    WebM's comes from the container and codec headers (`codec_context.width`/`height`).

    Opening already decodes a frame for some codecs (FFmpeg's stream-info probe does for H.264), and
    a header can lie about the frames that follow, so every decoder FFmpeg opens for this file gets
    `max_pixels`: it refuses a larger frame instead of allocating it."""
    import av

    if not data:
        raise VideoError("That file is empty. Send an MP4, WebM, MOV or GIF, please.")
    if max_bytes is not None and len(data) > max_bytes:
        raise VideoError(
            f"That video is too large ({_mb(len(data))}); I take videos up to {_mb(max_bytes)}. Send a shorter or smaller one, please."
        )
    screen = _gif_screen(data)
    if screen is not None:
        _check_size(*screen)
    limit = {"max_pixels": str(MAX_FRAME_PIXELS)}
    try:
        container = av.open(io.BytesIO(data), mode="r", options=limit)
    except Exception as error:  # av.FFmpegError, and anything the demuxers raise on garbage
        raise VideoError(UNREADABLE) from error
    streams = container.streams.video
    context = streams[0].codec_context if streams else None  # None: FFmpeg has no decoder for it
    try:
        if container.format.name not in CONTAINERS or context is None:
            raise VideoError(UNREADABLE)
        _check_size(context.width, context.height)
    except VideoError:
        container.close()
        raise
    context.options = limit  # for our own decoding: this context opens on the first packet
    context.thread_count = DECODE_THREADS
    return container


def _gif_screen(data: bytes) -> tuple[int, int] | None:
    """A GIF's logical screen (width, height) from its header, or None for anything else."""
    if data[:6] not in (b"GIF87a", b"GIF89a") or len(data) < 10:
        return None
    width, height = struct.unpack_from("<HH", data, 6)
    return width, height


def _format(container: Any) -> str:
    kind = CONTAINERS[container.format.name]
    if kind == "mp4" and container.metadata.get("major_brand", "").strip() == "qt":
        return "mov"
    if kind == "webm" and container.streams.video[0].codec_context.name not in {"vp8", "vp9", "av1"}:
        return "mkv"
    return kind


def _mb(size: int) -> str:
    if size >= 1_000_000:
        return f"{size / 1_000_000:.1f} MB"
    return f"{size / 1000:.0f} KB" if size >= 1000 else f"{size} bytes"


def _check_size(width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise VideoError(UNREADABLE)
    if width * height > MAX_FRAME_PIXELS:
        raise VideoError(
            f"That video's frames are too large ({width}x{height}); send one of at most "
            f"{MAX_FRAME_PIXELS // 1_000_000} megapixels a frame, please."
        )


def probe(data: bytes, *, max_bytes: int | None = None) -> VideoInfo:
    """What an uploaded video is: size, frame count, rate, length and container. The size is the
    header's (`_open` checks it); every packet is read but none decoded, so the count is right even
    where the container does not say it (WebM, GIF). A stream that does not decode is found by
    `read_frames`."""
    container = _open(data, max_bytes)
    try:
        stream = container.streams.video[0]
        time_base = stream.time_base or Fraction(1, 1_000_000)
        count, first, end = 0, None, None
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            count += 1
            if packet.pts is not None:
                first = packet.pts if first is None else min(first, packet.pts)
                stop = packet.pts + (packet.duration or 0)
                end = stop if end is None else max(end, stop)
        if not count:
            raise VideoError(UNREADABLE)
        seconds = float((end - first) * time_base) if first is not None and end is not None and end > first else 0.0
        if seconds <= 0 and container.duration:
            seconds = container.duration / 1_000_000
        rate = stream.average_rate or stream.guessed_rate
        fps = count / seconds if seconds > 0 else float(rate or 0)
        if seconds <= 0 and fps > 0:
            seconds = count / fps
        context = stream.codec_context
        return VideoInfo(context.width, context.height, count, round(fps, 3), round(seconds, 3), _format(container))
    except VideoError:
        raise
    except Exception as error:
        raise VideoError(UNREADABLE) from error
    finally:
        container.close()


def fit_pixels(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """width x height scaled down (never up), proportions kept, to at most `max_pixels` pixels."""
    if width * height <= max_pixels:
        return width, height
    scale = math.sqrt(max_pixels / (width * height))
    return max(1, math.floor(width * scale)), max(1, math.floor(height * scale))


def _decoded(container: Any, max_pixels: int | None) -> Iterator[tuple[Image.Image, float, float]]:
    """(RGB picture, start time, duration) of each frame, in presentation order, each scaled to at
    most `max_pixels` by FFmpeg's scaler straight from the decoded frame (no full-size RGB copy)."""
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    rate = stream.average_rate or stream.guessed_rate
    default = 1 / float(rate) if rate else 1 / 8
    for index, frame in enumerate(container.decode(stream)):
        _check_size(frame.width, frame.height)
        start = frame.time if frame.time is not None else index * default
        duration = float(frame.duration * frame.time_base) if frame.duration and frame.time_base else default
        width, height = fit_pixels(frame.width, frame.height, max_pixels) if max_pixels else (frame.width, frame.height)
        yield frame.to_image(width=width, height=height, interpolation="AREA"), start, duration


def read_frames(
    data: bytes, *, max_frames: int, fps: float | None = None, max_bytes: int | None = None, max_pixels: int | None = None
) -> tuple[list[Image.Image], float]:
    """An uploaded video's frames as RGB pictures, at most `max_frames` from its start, each scaled
    down to at most `max_pixels` (proportions kept) as it is decoded.

    With `fps`, the frames shown at 0, 1/fps, 2/fps, ... seconds (each the frame on screen at
    that time, so a faster video drops frames and a slower one repeats them); else every frame
    at the video's own rate. Returns the frames and their rate."""
    if max_frames < 1:
        raise ValueError("max_frames must be at least 1")
    if fps is not None and fps <= 0:
        raise ValueError("fps must be positive")
    container = _open(data, max_bytes)
    try:
        stream = container.streams.video[0]
        out: list[Image.Image] = []
        if fps is None:
            times = []
            for picture, start, _ in _decoded(container, max_pixels):
                out.append(picture)
                times.append(start)
                if len(out) >= max_frames:
                    break
            rate = stream.average_rate or stream.guessed_rate
            if rate:
                native = float(rate)
            elif len(times) > 1 and times[-1] > times[0]:
                native = (len(times) - 1) / (times[-1] - times[0])
            else:
                native = 8.0
            result = (out, native)
        else:
            origin, held, held_end = None, None, 0.0

            def wanted() -> float:
                return origin + len(out) / fps

            for picture, start, duration in _decoded(container, max_pixels):
                if origin is None:
                    origin = start
                # every wanted time before this frame starts shows the frame held on screen until now
                while held is not None and wanted() < start - TIME_EPSILON and len(out) < max_frames:
                    out.append(held)
                if len(out) >= max_frames:
                    break
                held, held_end = picture, start + duration
            while held is not None and len(out) < max_frames and (not out or wanted() < held_end - TIME_EPSILON):
                out.append(held)
            result = (out, float(fps))
        if not out:
            raise VideoError(UNREADABLE)
        return result
    except VideoError:
        raise
    except Exception as error:  # a stream that breaks half-way
        raise VideoError(UNREADABLE) from error
    finally:
        container.close()
