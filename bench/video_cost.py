#!/usr/bin/env python3
"""What a video model's clip costs through the bot, against bare diffusers, in one run.

For each model (Wan, LTX-Video; job kind `video`):
1. Drawing, per frame: the mode's diffusers pipeline called directly (bare: the same loaded
   pipeline object, so no second copy of the weights), against the engine's pass
   (`Engine.diffuse_video`: scheduler per job, prompt, tracker, the family's arguments) and the
   whole job (`render_job`: that, plus a PNG with parameters per frame and the MP4 and GIF). The
   ratios are the bot's overhead.
2. Encoding, per frame: the H.264 MP4 and the GIF of the clip's frames (generation.animation.video),
   against drawing them.

By default the built-in tiny models (random weights: `tiny-wan` text-to-video, `tiny-wan-i2v`
image-to-video from a picture, `tiny-ltx` text-to-video) at their tiny sizes, on whatever device
there is (seconds on a CPU). `--model` names a real model (a diffusers folder or a cached Hub id)
for real numbers on a GPU, with `--size`, `--frames`, `--steps` and `--mode`:

    python bench/video_cost.py
    python bench/video_cost.py --rounds 5
    python bench/video_cost.py --model /models/Wan2.1-T2V-1.3B-Diffusers --size 832x480 --frames 33 --steps 20 --dtype bfloat16
    python bench/video_cost.py --model /models/LTX-Video --size 704x512 --frames 41 --steps 20 --mode i2v
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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from config import ModelEntry, ModelRegistry  # noqa: E402
from generation.animation import video as clip_files  # noqa: E402
from generation.engine import Engine, Tracker  # noqa: E402
from generation.jobs import render_job  # noqa: E402
from generation.models import families  # noqa: E402
from generation.models.files import with_facts  # noqa: E402
from generation.models.loader import ModelCache, resolve_device, resolve_dtype  # noqa: E402
from generation.spec import ClipSpec, GenerationSpec  # noqa: E402
from storage.blobs import LocalBlobStore  # noqa: E402

TINY = {"tiny-wan": ("t2v", "32x32"), "tiny-wan-i2v": ("i2v", "32x32"), "tiny-ltx": ("t2v", "64x64")}
PROMPT = "a fox running through a snowy forest, the camera following it"


def timed(run: Callable[[], Any], rounds: int) -> tuple[float, Any]:
    """The median seconds of `rounds` runs (after one warm-up run), and the last result."""
    [(seconds, result)] = interleaved([run], rounds)
    return seconds, result


def interleaved(runs: list[Callable[[], Any]], rounds: int) -> list[tuple[float, Any]]:
    """Each run's median seconds over `rounds` rounds (after one warm-up round), the runs taking
    turns within a round, so a machine that slows down or speeds up meanwhile weighs on all alike."""
    results = [run() for run in runs]
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(rounds):
        for index, run in enumerate(runs):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            start = time.perf_counter()
            results[index] = run()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times[index].append(time.perf_counter() - start)
    return [(statistics.median(spent), result) for spent, result in zip(times, results, strict=True)]


def size_of(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height or width)


def picture(size: tuple[int, int], seed: int) -> Image.Image:
    """A textured first (or last) frame: a gradient with noise, as a photo's detail would be."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 255, size[0])[None, :, None]
    y = np.linspace(0, 255, size[1])[:, None, None]
    base = np.concatenate([x + 0 * y, y + 0 * x, (x + y) / 2], axis=2)
    return Image.fromarray(np.clip(base + rng.normal(0, 30, base.shape), 0, 255).astype(np.uint8))


def bench_model(engine: Engine, name: str, mode: str, size: tuple[int, int], frames: int, steps: int, rounds: int) -> None:
    entry = engine.models.registry.get(name)
    assert entry is not None
    family = families.family(entry.family)
    support = family.video()
    if support is None:
        print(f"\n{name}: {family.label} draws pictures, not clips; skipped")
        return
    variant = entry.guessed_variant
    defaults = support.defaults(variant, tiny=entry.kind == "tiny")
    frames = frames or defaults.frames
    problems = support.check(variant, frames, size[0], size[1], mode != "t2v", mode == "flf2v")
    if problems:
        print(f"\n{name}: " + " ".join(problems))
        return
    first = picture(size, 1) if mode != "t2v" else None
    last = picture(size, 2) if mode == "flf2v" else None
    keys = {}
    for role, image in (("init_image", first), ("end_image", last)):
        if image is not None:
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            keys[role] = engine.blobs.put(buffer.getvalue(), "png")
    spec = GenerationSpec(
        kind="video",
        prompt=PROMPT,
        model=name,
        family=family.id,
        width=size[0],
        height=size[1],
        steps=steps,
        cfg=defaults.cfg,
        sampler=family.default_sampler,
        seed=2,
        init_image=keys.get("init_image"),
        clip=ClipSpec(frames=frames, fps=defaults.fps, end_image=keys.get("end_image")),
    )
    loaded = engine.models.get(name)
    pipe = loaded.video_pipeline(mode)
    call: dict[str, Any] = {
        "prompt": PROMPT,
        "negative_prompt": "",
        "width": size[0],
        "height": size[1],
        "num_frames": frames,
        "num_inference_steps": steps,
        "guidance_scale": defaults.cfg,
        "output_type": "pil",
        **support.fixed_arguments,
    }
    if support.fps_argument:
        call[support.fps_argument] = defaults.fps
    if mode == "flf2v" and support.end_frame == "conditions":
        from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition

        call["conditions"] = [LTXVideoCondition(image=first, frame_index=0), LTXVideoCondition(image=last, frame_index=frames - 1)]
    elif first is not None:
        call["image"] = first
        if last is not None:
            call[support.end_frame] = last

    def bare() -> Any:
        with torch.inference_mode():
            return pipe(**call, generator=torch.Generator("cpu").manual_seed(2)).frames[0]

    def engine_pass() -> Any:
        return engine.diffuse_video(spec, Tracker(lambda step, total: None, lambda: False), first=first, last=last)

    (bare_s, _), (pass_s, _), (job_s, rendered) = interleaved([bare, engine_pass, lambda: render_job(engine, spec)], rounds)
    label = support.label(variant)
    print(f"\n{name} ({label}, {mode}): {size[0]}x{size[1]}, {frames} frames, {steps} steps, {spec.sampler}")
    print("1. drawing, per frame")
    print(f"   bare diffusers ({type(pipe).__name__})  {bare_s / frames * 1000:9.1f} ms/frame")
    print(f"   engine pass (diffuse_video)        {pass_s / frames * 1000:9.1f} ms/frame   x{pass_s / bare_s:.3f} of bare")
    print(f"   whole job (render_job)             {job_s / frames * 1000:9.1f} ms/frame   x{job_s / bare_s:.3f} of bare")
    pictures = [Image.open(io.BytesIO(image.png)).convert("RGB") for image in rendered.images]
    mp4_s, mp4 = timed(lambda: clip_files.encode_mp4(pictures, spec.clip.fps), rounds)  # type: ignore[union-attr]
    gif_s, gif = timed(lambda: clip_files.encode_gif(pictures, spec.clip.fps), rounds)  # type: ignore[union-attr]
    print("2. encoding, per frame")
    print(f"   MP4 (H.264)  {mp4_s / frames * 1000:8.2f} ms/frame  {len(mp4) / 1024:8.1f} KiB   x{mp4_s / bare_s:.3f} of drawing")
    print(f"   GIF          {gif_s / frames * 1000:8.2f} ms/frame  {len(gif) / 1024:8.1f} KiB   x{gif_s / bare_s:.3f} of drawing")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a Wan or LTX-Video folder or cached Hub id (default: the tiny ones)")
    parser.add_argument("--size", default=None, help="WIDTHxHEIGHT (default: the model's own, or the tiny ones')")
    parser.add_argument("--frames", type=int, default=0, help="frames a clip draws (default: the family's; 9 on the tiny ones)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--mode", choices=("t2v", "i2v", "flf2v"), default=None, help="default: what the model does first")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dtype", default="auto", help="auto (fp16 on a GPU, fp32 on a CPU), bfloat16, float16, float32")
    parser.add_argument("--memory", default="auto", choices=("auto", "gpu", "model_offload", "sequential_offload"))
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: 1 for the tiny models, torch's own otherwise)")
    args = parser.parse_args()
    if args.threads or args.model is None:  # the tiny models' ops are too small to share between threads (tests/conftest.py)
        torch.set_num_threads(args.threads or 1)

    device = resolve_device("auto")
    dtype = resolve_dtype(args.dtype, device)
    work = Path(tempfile.mkdtemp(prefix="sdbot-bench-video-"))
    if args.model is None:
        entries = [ModelEntry(source=name) for name in TINY]
    else:
        entries = [with_facts(ModelEntry(source=args.model, name="bench", memory=args.memory))]
    cache = ModelCache(ModelRegistry(entries), work / "models", device, dtype, max_loaded=1)
    engine = Engine(cache, LocalBlobStore(work / "blobs"))
    print(f"device {device}, {dtype}; median of {args.rounds} after a warm-up; torch threads {torch.get_num_threads()}")
    for entry in entries:
        name = entry.display_name
        support = families.family(entry.family).video()
        tiny_mode, tiny_size = TINY.get(name, ("t2v", None))
        if args.mode:
            mode = args.mode
        elif support is not None and entry.kind != "tiny":
            mode = next(m for m in ("t2v", "i2v", "flf2v") if m in support.modes(entry.guessed_variant))
        else:
            mode = tiny_mode
        if args.size:
            size = size_of(args.size)
        elif tiny_size:
            size = size_of(tiny_size)
        else:
            size = support.default_dimensions(entry.guessed_variant) if support is not None else (512, 512)
        bench_model(engine, name, mode, size, args.frames, args.steps, args.rounds)


if __name__ == "__main__":
    main()
