"""Issue 18's first "Done when", as a script checks it: `/animate a fox running --frames 8 --seed 2
--steps 4` in `run_bot.py console --jsonl` (a real process, the tiny model and its built-in motion
adapter) arrives as a playable MP4 of 8 frames at 8 fps whose frames, read back with /frames,
equal bare AnimateDiff's frame by frame."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from config import Settings
from generation.animation import video
from generation.engine import build_scheduler
from generation.models.motion import ensure_tiny_motion
from generation.models.tiny import TINY_VERSION
from tests.conftest import bot_env
from tests.support.console_process import ConsoleProcess


def bare_frames(models_dir: Path, size: tuple[int, int]) -> list[np.ndarray]:
    """Bare diffusers' AnimateDiff, as its docs show it, with the bot's default sampler and CFG."""
    from diffusers import AnimateDiffPipeline, MotionAdapter, StableDiffusionPipeline

    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    base = StableDiffusionPipeline.from_pretrained(str(models_dir / TINY_VERSION), safety_checker=None, requires_safety_checker=False)
    pipe = AnimateDiffPipeline.from_pipe(base, motion_adapter=MotionAdapter.from_pretrained(ensure_tiny_motion(models_dir) / "adapter"))
    pipe.scheduler = build_scheduler(defaults.default_sampler, dict(base.scheduler.config), [2])
    pipe.set_progress_bar_config(disable=True)
    width, height = size
    result = pipe(
        "a fox running",
        num_frames=8,
        num_inference_steps=4,
        guidance_scale=defaults.default_cfg,
        width=width,
        height=height,
        generator=torch.Generator().manual_seed(2),
    )
    return [np.asarray(frame).astype(int) for frame in result.frames[0]]


def test_animate_in_the_console_equals_bare_animatediff(tmp_path: Path, models_dir: Path) -> None:
    bot = ConsoleProcess(bot_env(tmp_path / "data", models_dir), tmp_path / "bot.log")
    bot.send(text="/animate a fox running --frames 8 --seed 2 --steps 4")
    assert bot.message("status", reply_to="u1")["job"] == 1
    done = bot.message("result", reply_to="u1", timeout=300)
    mp4 = Path(done["video"]).read_bytes()
    info = video.probe(mp4)
    assert (info.format, info.frames, info.fps) == ("mp4", 8, 8)
    assert [action["label"] for action in done["actions"]] == ["Reroll", "Longer", "Upscale 2x", "Remix"]

    bot.send(text="/frames 1 png")
    [document] = bot.message("text", reply_to="u2")["documents"]
    with zipfile.ZipFile(document["path"]) as archive:
        names = sorted(archive.namelist())
        frames = [np.asarray(Image.open(io.BytesIO(archive.read(name))).convert("RGB")).astype(int) for name in names]
    assert bot.finish() == 0

    expected = bare_frames(models_dir, (frames[0].shape[1], frames[0].shape[0]))
    assert len(frames) == 8
    for index, (ours, theirs) in enumerate(zip(frames, expected, strict=True)):
        assert np.abs(ours - theirs).max() <= 2, f"frame {index}"
    poster = np.asarray(Image.open(done["images"][0]).convert("RGB")).astype(int)
    assert np.array_equal(poster, frames[0])  # the preview is the first frame
