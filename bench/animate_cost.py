#!/usr/bin/env python3
"""What a clip costs, in one run, against baselines in the same process.

1. Drawing: an AnimateDiff clip of F frames (`/animate`), per frame, against a still (`/imagine`)
   of the same size, steps, sampler and CFG: the ratio is what the motion layers (and drawing the
   frames as one batch) cost per frame. Also a clip of 2F frames in context windows of F (FreeNoise)
   and a Deforum run of F frames (one img2img pass per frame), per frame.
2. Encoding: the H.264 MP4 and the GIF of the clip's frames (generation.animation.video), against
   the time it took to draw them.

On the tiny model and its built-in tiny motion adapter by default; `--model` names a diffusers
folder or cached Hub id for real numbers, with `--motion` a MotionAdapter for it (on a GPU).

    python bench/animate_cost.py
    python bench/animate_cost.py --size 64 --frames 8 --steps 4 --rounds 3
    python bench/animate_cost.py --model /models/sd15 --motion guoyww/animatediff-motion-adapter-v1-5-3 --size 512
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from config import ModelEntry, ModelRegistry  # noqa: E402
from config.models import MotionAdapterEntry  # noqa: E402
from generation.animation import video  # noqa: E402
from generation.engine import Engine  # noqa: E402
from generation.jobs import render_job  # noqa: E402
from generation.models.loader import ModelCache, resolve_device, resolve_dtype  # noqa: E402
from generation.models.motion import TINY_MOTION, MotionModels  # noqa: E402
from generation.spec import ClipSpec, GenerationSpec  # noqa: E402
from storage.blobs import LocalBlobStore  # noqa: E402


def timed(run: Callable[[], object], rounds: int) -> tuple[float, object]:
    """The median seconds of `rounds` runs (after one warm-up run), and the last result."""
    result = run()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        result = run()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--motion", default=None, help="a MotionAdapter folder or Hub id (default: the tiny one)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    device = resolve_device("auto")
    dtype = resolve_dtype("auto", device)
    work = Path(tempfile.mkdtemp(prefix="sdbot-bench-"))
    registry = ModelRegistry([ModelEntry(source=args.model, name="bench")])
    adapters = {} if args.motion is None else {"bench": MotionAdapterEntry(source=args.motion)}
    motion_name = TINY_MOTION if args.motion is None else "bench"
    cache = ModelCache(registry, work / "models", device, dtype)
    engine = Engine(cache, LocalBlobStore(work / "blobs"), motion=MotionModels(adapters, {}, work / "models", device, dtype))

    base = dict(
        prompt="a fox running through a forest",
        model="bench",
        width=args.size,
        height=args.size,
        steps=args.steps,
        cfg=7.0,
        sampler="Euler",
        seed=2,
    )
    frames = args.frames
    still = GenerationSpec(kind="txt2img", **base)  # type: ignore[arg-type]
    clip = GenerationSpec(kind="animate", clip=ClipSpec(frames=frames, motion=motion_name, context=frames), **base)  # type: ignore[arg-type]
    windows = GenerationSpec(
        kind="animate", clip=ClipSpec(frames=2 * frames, motion=motion_name, context=frames, stride=max(1, frames // 4)), **base
    )  # type: ignore[arg-type]
    deforum = GenerationSpec(kind="deforum", strength=0.6, clip=ClipSpec(frames=frames, zoom="0:(1.05)"), **base)  # type: ignore[arg-type]

    print(
        f"device {device}, {dtype}; model {args.model}, motion {args.motion or 'tiny'}; "
        f"{args.size}x{args.size}, {args.steps} steps, {frames} frames, median of {args.rounds}"
    )
    still_s, _ = timed(lambda: render_job(engine, still), args.rounds)
    clip_s, rendered = timed(lambda: render_job(engine, clip), args.rounds)
    windows_s, _ = timed(lambda: render_job(engine, windows), args.rounds)
    deforum_s, _ = timed(lambda: render_job(engine, deforum), args.rounds)
    print("\n1. drawing, per frame, against a still of the same size (includes the clip's encoding, below)")
    print(f"   still                      {still_s * 1000:9.1f} ms")
    print(f"   animate, {frames:3d} frames        {clip_s / frames * 1000:9.1f} ms/frame   x{clip_s / frames / still_s:.2f} of a still")
    print(
        f"   animate, {2 * frames:3d} in windows     {windows_s / (2 * frames) * 1000:9.1f} ms/frame   "
        f"x{windows_s / (2 * frames) / still_s:.2f} of a still"
    )
    print(
        f"   deforum, {frames:3d} frames        {deforum_s / frames * 1000:9.1f} ms/frame   x{deforum_s / frames / still_s:.2f} of a still"
    )

    pictures = [Image.open(io.BytesIO(image.png)).convert("RGB") for image in rendered.images]  # type: ignore[attr-defined]
    mp4_s, mp4 = timed(lambda: video.encode_mp4(pictures, 8), args.rounds)
    gif_s, gif = timed(lambda: video.encode_gif(pictures, 8), args.rounds)
    print("\n2. encoding the clip's frames, against drawing them")
    print(f"   MP4 (H.264)  {mp4_s * 1000:8.1f} ms  {len(mp4) / 1024:7.1f} KiB   x{mp4_s / clip_s:.3f} of the drawing")  # type: ignore[arg-type]
    print(f"   GIF          {gif_s * 1000:8.1f} ms  {len(gif) / 1024:7.1f} KiB   x{gif_s / clip_s:.3f} of the drawing")  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
