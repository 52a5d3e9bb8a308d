"""Clips as files (generation.animation.video) and clips fitted to a chat's limit (bot.media.clip_of):
what the encoders write is read back with PyAV and Pillow, and uploads made here in each format
are probed and read, resampled and cut; bad uploads get a polite VideoError."""

from __future__ import annotations

import io
import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from bot import media
from commands.frame.types import VideoFile
from generation.animation import video
from generation.animation.video import VideoError


def frames(n: int = 10, size: tuple[int, int] = (64, 48), *, noise: bool = False) -> list[Image.Image]:
    """Frame i has red = 20 * i (so a decoded frame says which it is), or noise (big files)."""
    rng = np.random.default_rng(7)
    out = []
    for i in range(n):
        if noise:
            out.append(Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)))
        else:
            out.append(Image.new("RGB", size, (20 * i % 256, 100, 50)))
    return out


def red(picture: Image.Image) -> int:
    return picture.getpixel((picture.width // 2, picture.height // 2))[0]


def decoded(data: bytes) -> tuple[list[av.VideoFrame], dict[str, object], str]:
    """The frames, the stream's codec, pixel format and average rate, and the container's format.
    Read while the container is open: PyAV >= 18.1.1 refuses a closed container's stream."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        out = list(container.decode(stream))
        facts = {"codec": stream.codec_context.name, "pix_fmt": stream.codec_context.pix_fmt, "rate": stream.average_rate}
        return out, facts, container.format.name


def top_level_boxes(data: bytes) -> list[str]:
    """The MP4's top-level box types in file order."""
    boxes, offset = [], 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if size == 1:
            size = struct.unpack(">Q", data[offset + 8 : offset + 16])[0]
        boxes.append(kind.decode("latin-1"))
        if size < 8:
            break
        offset += size
    return boxes


def webm(pictures: list[Image.Image], fps: int) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="webm") as container:
        stream = container.add_stream("libvpx-vp9", rate=fps)
        stream.width, stream.height, stream.pix_fmt = pictures[0].width, pictures[0].height, "yuv420p"
        for i, picture in enumerate(pictures):
            frame = av.VideoFrame.from_image(picture)
            frame.pts, frame.time_base = i, Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return buffer.getvalue()


# --- encoding -----------------------------------------------------------------------------------


def test_the_mp4_is_h264_with_every_frame_at_its_rate_and_its_index_first() -> None:
    data = video.encode_mp4(frames(10), 8)
    out, facts, name = decoded(data)
    assert "mp4" in name and facts["codec"] == "h264" and facts["pix_fmt"] == "yuv420p"
    assert len(out) == 10 and facts["rate"] == 8
    assert [round(f.time, 3) for f in out] == [i / 8 for i in range(10)]
    assert (out[0].width, out[0].height) == (64, 48)
    assert [red(f.to_image()) for f in out] == pytest.approx([20 * i for i in range(10)], abs=4)  # in order
    boxes = top_level_boxes(data)
    assert boxes[0] == "ftyp" and boxes.index("moov") < boxes.index("mdat")  # faststart: plays while loading
    container = av.open(io.BytesIO(data))
    assert not container.streams.audio  # a soundless MP4: an animation on Telegram
    container.close()


def test_odd_sides_are_padded_even_and_max_side_scales_down() -> None:
    out, _, _ = decoded(video.encode_mp4(frames(3, (65, 47)), 8))
    assert (out[0].width, out[0].height) == (66, 48) == video.frame_size(65, 47)
    edge = out[0].to_ndarray(format="rgb24")
    assert abs(int(edge[10, 65, 0]) - int(edge[10, 64, 0])) < 6  # the added column repeats the edge, no black line
    out, _, _ = decoded(video.encode_mp4(frames(3, (200, 100)), 8, max_side=50))
    assert (out[0].width, out[0].height) == (50, 26) == video.frame_size(200, 100, max_side=50)
    assert video.frame_size(200, 100, max_side=500) == (200, 100)  # never up


def test_a_higher_crf_makes_a_smaller_file() -> None:
    pictures = frames(6, (96, 96), noise=True)
    assert len(video.encode_mp4(pictures, 8, crf=35)) < len(video.encode_mp4(pictures, 8, crf=18)) / 2


def test_the_gif_loops_forever_with_one_duration_per_frame() -> None:
    data = video.encode_gif(frames(10), 10, max_side=32)
    with Image.open(io.BytesIO(data)) as gif:
        assert gif.format == "GIF" and gif.n_frames == 10 and gif.info["loop"] == 0 and gif.size == (32, 24)
        durations = []
        for i in range(gif.n_frames):
            gif.seek(i)
            durations.append(gif.info["duration"])
            assert red(gif.convert("RGB")) == pytest.approx(20 * i, abs=8)
    assert durations == [100] * 10
    with Image.open(io.BytesIO(video.encode_gif(frames(2), 60))) as fast:
        assert fast.info["duration"] == 20  # browsers slow anything faster down to 10 fps


def test_playback_frames_ping_pong_without_repeating_the_ends() -> None:
    a, b, c, d = "abcd"
    assert video.playback_frames([a, b, c, d], loop=True) == [a, b, c, d, c, b]  # type: ignore[list-item]
    assert video.playback_frames([a, b, c, d], loop=False) == [a, b, c, d]  # type: ignore[list-item]
    assert video.playback_frames([a, b], loop=True) == [a, b]  # type: ignore[list-item]
    assert video.playback_frames([a], loop=True) == [a]  # type: ignore[list-item]
    n = 5
    clip = VideoFile(Path("x.mp4"), None, 8, 8, 8, tuple(Path(f"{i}.png") for i in range(n)), loop=True)
    assert len(video.playback_frames(list(range(n)), True)) == clip.seconds * clip.fps  # type: ignore[arg-type]


# --- reading uploads ----------------------------------------------------------------------------


def test_probe_and_read_an_mp4() -> None:
    data = video.encode_mp4(frames(12), 8)
    assert video.probe(data) == video.VideoInfo(64, 48, 12, 8.0, 1.5, "mp4")
    pictures, fps = video.read_frames(data, max_frames=100)
    assert len(pictures) == 12 and fps == 8.0 and pictures[0].mode == "RGB" and pictures[0].size == (64, 48)
    assert [red(p) for p in pictures] == pytest.approx([20 * i for i in range(12)], abs=4)


def test_read_frames_resamples_to_the_frames_on_screen_at_each_time() -> None:
    data = video.encode_mp4(frames(12), 8)  # 1.5 s
    half, fps = video.read_frames(data, max_frames=100, fps=4)
    assert fps == 4.0 and [red(p) for p in half] == pytest.approx([0, 40, 80, 120, 160, 200], abs=4)  # every other
    double, fps = video.read_frames(data, max_frames=100, fps=16)
    assert fps == 16.0 and len(double) == 24  # each frame twice
    assert [red(p) for p in double[:6]] == pytest.approx([0, 0, 20, 20, 40, 40], abs=4)
    odd, _ = video.read_frames(data, max_frames=100, fps=6)  # 1.5 s at 6 fps: 9 frames, at 0, 1/6, 2/6 ...
    assert [red(p) for p in odd] == pytest.approx([20 * int(k / 6 * 8 + 1e-9) for k in range(9)], abs=4)


def test_read_frames_stops_at_max_frames() -> None:
    data = video.encode_mp4(frames(12), 8)
    assert len(video.read_frames(data, max_frames=5)[0]) == 5
    assert len(video.read_frames(data, max_frames=5, fps=16)[0]) == 5
    assert [red(p) for p in video.read_frames(data, max_frames=3, fps=2)[0]] == pytest.approx([0, 80, 160], abs=4)


def test_read_frames_scales_frames_down_as_they_are_decoded() -> None:
    data = video.encode_mp4(frames(6), 8)  # 64x48
    pictures, fps = video.read_frames(data, max_frames=10, max_pixels=32 * 24)
    assert fps == 8.0 and [p.size for p in pictures] == [(32, 24)] * 6 and pictures[0].mode == "RGB"
    assert [red(p) for p in pictures] == pytest.approx([20 * i for i in range(6)], abs=4)
    assert video.read_frames(data, max_frames=1, max_pixels=1000)[0][0].size == (36, 27)  # proportions kept
    assert video.read_frames(data, max_frames=1, max_pixels=10**6)[0][0].size == (64, 48)  # never up


def test_probe_and_read_a_gif() -> None:
    data = video.encode_gif(frames(6), 10)
    info = video.probe(data)
    assert (info.width, info.height, info.frames, info.format) == (64, 48, 6, "gif")
    assert info.seconds == pytest.approx(0.6, abs=0.01) and info.fps == pytest.approx(10, abs=0.1)
    pictures, fps = video.read_frames(data, max_frames=100)
    assert len(pictures) == 6 and fps == pytest.approx(10, abs=0.1)
    assert [red(p) for p in pictures] == pytest.approx([20 * i for i in range(6)], abs=8)
    assert len(video.read_frames(data, max_frames=100, fps=5)[0]) == 3


def test_probe_and_read_a_webm() -> None:
    data = webm(frames(10), 10)
    info = video.probe(data)
    assert info == video.VideoInfo(64, 48, 10, 10.0, 1.0, "webm")
    pictures, fps = video.read_frames(data, max_frames=100, fps=5)
    assert fps == 5.0 and [red(p) for p in pictures] == pytest.approx([0, 40, 80, 120, 160], abs=6)


@pytest.mark.parametrize("what", ["png", "random", "empty", "truncated"])
def test_probe_refuses_what_is_not_a_video_politely(what: str) -> None:
    if what == "png":
        buffer = io.BytesIO()
        frames(1)[0].save(buffer, format="PNG")
        data = buffer.getvalue()  # FFmpeg would open it as a one-frame "video"
    elif what == "random":
        data = np.random.default_rng(3).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    elif what == "empty":
        data = b""
    else:
        data = video.encode_mp4(frames(10), 8)[:300]
    for read in (lambda: video.probe(data), lambda: video.read_frames(data, max_frames=10)):
        with pytest.raises(VideoError) as caught:
            read()
        message = caught.value.message
        assert "MP4, WebM, MOV or GIF" in message and "please" in message.lower()
        assert "Traceback" not in message and "av." not in message


def test_probe_refuses_an_oversize_file_saying_the_limit() -> None:
    data = video.encode_mp4(frames(10, noise=True), 8)
    assert video.probe(data, max_bytes=len(data)).frames == 10  # at the limit is fine
    with pytest.raises(VideoError) as caught:
        video.probe(data, max_bytes=1000)
    assert "too large" in caught.value.message and "1 KB" in caught.value.message
    with pytest.raises(VideoError):
        video.read_frames(data, max_frames=10, max_bytes=1000)


def test_a_video_error_is_a_user_error() -> None:
    from generation.errors import EngineUserError

    assert issubclass(VideoError, EngineUserError)  # the worker shows its message and does not retry


# --- fitting a clip to a chat's limit ------------------------------------------------------------


def stored_clip(tmp_path: Path, pictures: list[Image.Image], *, fps: int = 8, loop: bool = False, gif: bool = True) -> VideoFile:
    paths = []
    for i, picture in enumerate(pictures):
        path = tmp_path / f"frame-{i}.png"
        picture.save(path)
        paths.append(path)
    played = video.playback_frames(pictures, loop)
    mp4 = tmp_path / "clip.mp4"
    mp4.write_bytes(video.encode_mp4(played, fps))
    gif_path = tmp_path / "clip.gif"
    if gif:
        gif_path.write_bytes(video.encode_gif(played, fps))
    return VideoFile(mp4, gif_path if gif else None, pictures[0].width, pictures[0].height, fps, tuple(paths), loop)


def test_a_clip_that_fits_goes_as_stored(tmp_path: Path) -> None:
    clip_file = stored_clip(tmp_path, frames(6))
    clip = media.clip_of(clip_file, max_bytes=10_000_000, stem="sdbot-7")
    assert clip.data == clip_file.mp4.read_bytes() and clip.filename == "sdbot-7.mp4" and clip.kind == "mp4"
    assert clip.note is None and (clip.width, clip.height, clip.seconds) == (64, 48, 0.75)


def test_a_clip_over_the_limit_is_re_encoded_then_downscaled(tmp_path: Path) -> None:
    clip_file = stored_clip(tmp_path, frames(6, (256, 192), noise=True), loop=True)  # noise: crf matters
    stored = clip_file.mp4.stat().st_size
    quality = media.clip_of(clip_file, max_bytes=int(stored * 0.8))  # a higher crf is enough
    assert quality.kind == "mp4" and len(quality.data) <= stored * 0.8 and "lower quality" in (quality.note or "")
    out, _, _ = decoded(quality.data)
    assert len(out) == 10 and (out[0].width, out[0].height) == (256, 192)  # ping-pong kept: 2 * 6 - 2

    limit = stored // 8  # no crf is enough at 256x192: about 110 pixels a side is
    small = media.clip_of(clip_file, max_bytes=limit)
    assert small.kind == "mp4" and len(small.data) <= limit
    out, _, _ = decoded(small.data)
    assert len(out) == 10  # every frame, ping-pong kept
    assert (out[0].width, out[0].height) == (small.width, small.height)
    assert media.MIN_CLIP_SIDE < max(small.width, small.height) < 192  # downscaled, above the floor
    assert f"downscaled to {small.width}x{small.height}" in (small.note or "")
    assert small.seconds == clip_file.seconds == 10 / 8


def test_the_last_mp4_tried_is_min_clip_side_and_none_smaller(tmp_path: Path) -> None:
    pictures = frames(6, (256, 192), noise=True)
    clip_file = stored_clip(tmp_path, pictures, loop=True)
    played = video.playback_frames(pictures, True)
    at_min = len(video.encode_mp4(played, 8, crf=media.CLIP_SHRINK_CRF, max_side=media.MIN_CLIP_SIDE))
    # the estimate from the full-size try aims below MIN_CLIP_SIDE: the floor itself is tried
    small = media.clip_of(clip_file, max_bytes=at_min)
    assert small.kind == "mp4" and max(small.width, small.height) == media.MIN_CLIP_SIDE
    assert len(small.data) <= at_min and len(decoded(small.data)[0]) == 10
    # half of that would take a smaller side, which is not tried (and noise GIFs are far bigger)
    assert len(video.encode_mp4(played, 8, crf=media.CLIP_SHRINK_CRF, max_side=48)) <= at_min // 2
    with pytest.raises(media.ClipError):
        media.clip_of(clip_file, max_bytes=at_min // 2)


def test_the_gif_goes_when_no_mp4_can_fit(tmp_path: Path) -> None:
    clip_file = stored_clip(tmp_path, frames(4, (128, 128)))
    for path in clip_file.frames:
        path.unlink()  # no frames to re-encode from: the stored GIF is the smaller file left
    gif = clip_file.gif.read_bytes()  # type: ignore[union-attr]
    clip = media.clip_of(clip_file, max_bytes=len(gif))
    assert clip.kind == "gif" and clip.data == gif and clip.filename.endswith(".gif") and "GIF" in (clip.note or "")


def test_a_smaller_gif_is_made_when_even_the_smallest_mp4_is_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clip_file = stored_clip(tmp_path, frames(4, (256, 256), noise=True), gif=False)
    never = b"x" * 1_000_000
    clip_file.mp4.write_bytes(never)  # the stored MP4 is over the limit too
    monkeypatch.setattr(media.encoder, "encode_mp4", lambda *a, **k: never)  # an MP4 never fits
    full_gif = len(video.encode_gif(frames(4, (256, 256), noise=True), 8))
    limit = 100_000
    assert full_gif > limit  # a GIF at full size does not fit either
    clip = media.clip_of(clip_file, max_bytes=limit)
    assert clip.kind == "gif" and clip.filename.endswith(".gif") and len(clip.data) <= limit
    with Image.open(io.BytesIO(clip.data)) as gif:
        assert gif.format == "GIF" and gif.n_frames == 4 and gif.size == (clip.width, clip.height)
    assert media.MIN_CLIP_SIDE <= clip.width < 256
    assert f"GIF downscaled to {clip.width}x{clip.height}" in (clip.note or "")


def test_without_a_stored_gif_one_is_made_at_full_size_when_it_fits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clip_file = stored_clip(tmp_path, frames(4, (256, 256)), gif=False)  # flat frames: a small GIF
    never = b"x" * 1_000_000
    clip_file.mp4.write_bytes(never)
    monkeypatch.setattr(media.encoder, "encode_mp4", lambda *a, **k: never)
    clip = media.clip_of(clip_file, max_bytes=60_000)
    assert clip.kind == "gif" and (clip.width, clip.height) == (256, 256) and "downscaled" not in (clip.note or "")
    with Image.open(io.BytesIO(clip.data)) as gif:
        assert gif.size == (256, 256) and gif.n_frames == 4


def test_nothing_fits_says_so(tmp_path: Path) -> None:
    clip_file = stored_clip(tmp_path, frames(4, (128, 128), noise=True))
    with pytest.raises(media.ClipError) as caught:
        media.clip_of(clip_file, max_bytes=200)
    assert "isn't attached" in caught.value.message and "/frames" in caught.value.message
    gone = VideoFile(tmp_path / "no.mp4", None, 8, 8, 8, (tmp_path / "no.png",))
    with pytest.raises(media.ClipError) as caught:
        media.clip_of(gone, max_bytes=10_000_000)
    assert "can't find" in caught.value.message
