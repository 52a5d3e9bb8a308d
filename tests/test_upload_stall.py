"""Uploads that are cheap to send and costly to read (issue 28): a 1 MB GIF of eighty 4096x4096
frames, a 190 KB GIF of one 16000x16000 frame. Reading one must not stall the other people on the
process (the command layer decodes off the event loop) nor take memory by the gigabyte (the frame
size is checked from the header before anything is decoded; frames are scaled down to
SDBOT_MAX_CLIP_PIXELS as they are decoded). Driven through the command service as an adapter does."""

from __future__ import annotations

import asyncio
import io
import os
import struct
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import av
import pytest
from PIL import Image

from commands.frame.types import Attachment
from config import Settings
from tests.test_animate_service import refused
from tests.test_edits_service import job_spec, jobs_count
from tests.test_service import Bot

MiB = 2**20
STATM = Path("/proc/self/statm")


def uniform_gif(side: int, frames: int) -> bytes:
    """An animated GIF of `frames` frames of side x side, each one colour (frame i: red = 3 * i),
    0.1 s each. Pillow compresses one frame; every frame repeats that pixel data with a colour
    table of its own, so 80 frames of 4096x4096 take a second to build, not twenty."""
    buffer = io.BytesIO()
    Image.new("P", (side, side), 0).save(buffer, format="GIF")
    one = buffer.getvalue()
    flags = one[10]
    at = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)  # past the header and the global colour table
    while one[at] == 0x21:  # extension blocks: label, then data sub-blocks up to an empty one
        at += 2
        while one[at]:
            at += one[at] + 1
        at += 1
    assert one[at] == 0x2C and not one[at + 9] & 0x80, "Pillow's frame: an image descriptor, no local colours"
    pixels = one[at + 10 : -1]  # the LZW data and its terminator, up to the trailer
    out = [b"GIF89a", struct.pack("<HHBBB", side, side, 0, 0, 0), b"!\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"]
    for i in range(frames):
        out.append(b"!\xf9\x04\x04" + struct.pack("<H", 10) + b"\x00\x00")  # 10 centiseconds, keep the frame
        out.append(b"," + struct.pack("<HHHHB", 0, 0, side, side, 0x80) + bytes([3 * i % 256, 90, 40, 0, 0, 0]))
        out.append(pixels)
    out.append(b";")
    return b"".join(out)


class PeakMemory:
    """How far this process's resident memory rose above where it stood on entering, sampled every
    5 ms from a thread of its own (it keeps sampling while the event loop is blocked)."""

    def __enter__(self) -> Self:
        if not STATM.exists():
            pytest.skip("needs Linux's /proc to read resident memory")
        self.start = self.peak = self._resident()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.start

    def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, self._resident())
            if self._stop.wait(0.005):
                return

    @staticmethod
    def _resident() -> int:
        return int(STATM.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def test_a_gif_of_huge_frames_is_read_off_the_loop_in_bounded_memory(bot: Bot, settings: Settings) -> None:
    gif = uniform_gif(4096, 80)
    with av.open(io.BytesIO(gif)) as container:  # what the file was: 80 frames of 4096x4096, about 1 MB
        stream = container.streams.video[0]
        assert (stream.frames, stream.codec_context.width, stream.codec_context.height) == (80, 4096, 4096)
    assert 0.8e6 < len(gif) < 1.5e6, len(gif)
    clip = Attachment("huge-frames.gif", gif, "image/gif")
    await bot.send("/queue", user="bob")  # bob's account and the first queries, made before the clock runs

    latencies: list[float] = []  # bob's /queue every 0.1 s: from when he sent it to his answer
    answered_while_reading = 0
    with PeakMemory() as memory:
        upload = asyncio.create_task(bot.send("/video2video a watercolor fox --frames 8", attachments=(clip,)))
        sent = time.perf_counter()
        while not upload.done():
            await asyncio.sleep(max(0.0, sent - time.perf_counter()))  # a blocked loop wakes this late: counted
            [(_, answer)] = await bot.send("/queue", user="bob")
            latencies.append(time.perf_counter() - sent)
            assert answer.kind != "error" and "Queue:" in answer.text, answer.text
            answered_while_reading += not upload.done()
            sent = max(sent + 0.1, time.perf_counter())
        [(_, queued)] = await upload

    print(
        f"80x4096² GIF: /queue answered {answered_while_reading} times while it was read, the slowest in "
        f"{max(latencies) * 1000:.0f} ms; resident memory +{memory.growth / MiB:.0f} MiB"
    )  # pytest -s shows it
    # bob is answered as ever while alice's GIF is read (before: not until it was, 13 s here, a minute with 32 frames)
    assert answered_while_reading >= 1 and max(latencies) < 1.0, latencies
    assert queued.kind == "status", queued.text
    assert "your video is 4096x4096" in queued.text, queued.text
    spec, _, _ = await job_spec(bot, queued.job_id)  # type: ignore[arg-type]
    assert spec.clip is not None and len(spec.clip.source) == 8
    for key in spec.clip.source:  # the frames stored are the scaled ones (before: 4096x4096 PNGs)
        with Image.open(bot.core.ctx.blobs.path(key)) as frame:
            assert frame.width * frame.height <= settings.max_clip_pixels and frame.width == frame.height, frame.size
    # one 64 MiB canvas at a time, then 512x512 frames (before: eight full-size RGB frames, 800 MiB and more)
    assert memory.growth < 300 * MiB, memory.growth / MiB


async def test_a_gif_of_one_16000x16000_frame_is_refused_from_its_header(bot: Bot) -> None:
    gif = uniform_gif(16000, 1)
    assert 150_000 < len(gif) < 250_000, len(gif)
    before = await jobs_count(bot)
    with PeakMemory() as memory:
        text = await refused(bot, "/video2video a fox", attachments=(Attachment("bomb.gif", gif, "image/gif"),))
    print(f"16000² GIF refused; resident memory +{memory.growth / MiB:.0f} MiB")
    assert "`bomb.gif`: That video's frames are too large (16000x16000)" in text, text
    assert "at most 16 megapixels a frame" in text, text
    # refused before FFmpeg decodes a pixel (before: its first frame was decoded, a 1 GB canvas, to learn its size)
    assert memory.growth < 100 * MiB, memory.growth / MiB
    assert await jobs_count(bot) == before
