"""`/deforum`: Deforum's 2D mode, an img2img loop along keyframe schedules.

Frame numbers are absolute: the drawn frames are `offset .. offset + frames - 1`, where `offset`
is `spec.clip.offset` (0, or the length of the clip so far when Longer extends it), and every
schedule (zoom, angle, tx, ty, strength, the prompt schedule) is evaluated over
`offset + frames` frames, so a longer clip continues its schedules where the clip left off.

- frame 0 (a new clip): txt2img of the prompt in force at frame 0, at the job's size and seed;
  or, when the job starts from a picture (`spec.init_image`), img2img of that picture (resized to
  the job's size) at frame 0's strength.
- frame k > 0: the previous frame warped by frame k's motion (`warp.Motion(zoom, angle, tx, ty)`,
  Deforum's `anim_frame_warp_2d`), colour-matched to the clip's first frame when
  `clip.color_coherence` (LAB, `warp.match_colors`), then redrawn by img2img at frame k's
  strength (`clip.strength_schedule`, else `spec.strength`: the fraction of the steps that run,
  A1111's denoising strength, as /deforum checks it), with seed `spec.seed + k` and the prompt in
  force at frame k (`keyframes.prompt_at`); the negative prompt is the job's throughout.
- Longer (`clip.extend`): the first new frame continues from the last frame of `clip.source`,
  colour-matched to `clip.source[0]`; the job's `init_image` (kept from the first run) is not
  used again. The result is the whole longer clip, the frames so far and then the new ones, so
  output k is frame k and carries seed + k (`jobs._render_clip`).

Each frame is a one-image txt2img or img2img job of its own (`_frame_spec`), drawn by
`Engine.diffuse` exactly as `draw.generate` draws one, so a frame can be reproduced alone from
its input picture, prompt, seed and strength. Progress runs 0..100% once over the whole clip
(`tracker.planned` = every frame's denoising steps); a cancel is seen between frames and, as in
every diffusion pass, between steps (`JobCancelled`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from generation.animation.keyframes import parse_prompt_schedule, prompt_at, schedule_values
from generation.animation.warp import Motion, match_colors, warp
from generation.engine import Engine, Tracker
from generation.errors import EngineUserError
from generation.spec import GenerationSpec

# The init_image of a frame's img2img spec when its input is the previous frame, warped: a
# picture that exists only in memory and goes to the pipeline as the `image=` argument (as
# draw.generate passes the picture it read). GenerationSpec insists that img2img names an init
# image; storing every intermediate frame in the blob store only to read it back would leave
# orphan blobs behind. This key names no blob, so any code that tried to read the frame's input
# from storage (`Engine.init_image`) would fail loudly ("gone from storage") instead of drawing
# from some other picture.
IN_MEMORY_FRAME = "deforum-previous-frame"


def deforum(engine: Engine, spec: GenerationSpec, tracker: Tracker) -> list[Image.Image]:
    clip = spec.clip
    assert clip is not None and spec.kind == "deforum"
    offset, size = clip.offset, (spec.width, spec.height)
    total = offset + clip.frames  # schedules run over the whole clip, the frames so far included
    prompts = parse_prompt_schedule(spec.prompt)
    zoom, angle = schedule_values(clip.zoom, total), schedule_values(clip.angle, total)
    tx, ty = schedule_values(clip.tx, total), schedule_values(clip.ty, total)
    assert spec.strength is not None  # the validator requires it of a deforum job
    strengths = schedule_values(clip.strength_schedule, total) if clip.strength_schedule else [spec.strength] * total
    drawn_from_noise = offset == 0 and spec.init_image is None  # frame 0 is txt2img
    for frame in range(offset, total):
        if frame > 0 or not drawn_from_noise:
            _check_strength(strengths[frame], frame, spec.steps)
    tracker.planned = tracker.done + sum(
        spec.steps if frame == 0 and drawn_from_noise else _steps_run(spec.steps, strengths[frame]) for frame in range(offset, total)
    )

    so_far = [_read_frame(engine, key, size) for key in clip.source] if clip.extend else []
    frames: list[Image.Image] = list(so_far)
    for frame in range(offset, total):
        tracker.check()
        prompt = prompt_at(prompts, frame)
        if frame == 0 and drawn_from_noise:
            single = _frame_spec(spec, "txt2img", prompt, frame, strength=None, init_image=None)
            [picture] = engine.diffuse(single, "txt2img", tracker, width=spec.width, height=spec.height)
        else:
            if frame == 0:  # a new clip from a picture: img2img of it
                assert spec.init_image is not None
                start, key = _fit(engine.init_image(spec), size), spec.init_image
            else:
                moved = warp(_pixels(frames[-1]), Motion(zoom[frame], angle[frame], tx[frame], ty[frame]))
                if clip.color_coherence:
                    moved = match_colors(moved, _pixels(frames[0]))
                start, key = Image.fromarray(moved), IN_MEMORY_FRAME
            single = _frame_spec(spec, "img2img", prompt, frame, strength=strengths[frame], init_image=key)
            [picture] = engine.diffuse(single, "img2img", tracker, image=start, strength=strengths[frame])
        frames.append(picture.convert("RGB"))
    return frames


def _frame_spec(
    spec: GenerationSpec, kind: str, prompt: str, frame: int, *, strength: float | None, init_image: str | None
) -> GenerationSpec:
    """Frame `frame` as a one-image job of its own. Validated (`model_copy` would not run the
    validator), so a frame spec is one GenerationSpec accepts: txt2img with no init image and no
    clip, img2img with an init image and a strength."""
    update: dict[str, Any] = {
        "kind": kind,
        "prompt": prompt,
        "seed": spec.seed + frame,
        "n": 1,
        "strength": strength,
        "init_image": init_image,
        "clip": None,
    }
    return spec.evolve(**update)


def _steps_run(steps: int, strength: float) -> int:
    """The denoising steps an img2img pass runs (diffusers' `get_timesteps`, Engine._diffuse)."""
    return min(int(steps * strength), steps)


def _check_strength(strength: float, frame: int, steps: int) -> None:
    """/deforum checks the strengths of the frames it asked for; a Longer clip evaluates the
    schedule further (an expression of t may leave the range there), so each frame is checked."""
    if not 0 < strength <= 1:
        raise EngineUserError(f"the strength schedule gives {strength:g} at frame {frame}; strengths lie above 0, up to 1.")
    if _steps_run(steps, strength) < 1:
        raise EngineUserError(
            f"with strength {strength:g} at frame {frame} and {steps} steps no denoising step would run: "
            "use more steps or a higher strength."
        )


def _read_frame(engine: Engine, key: str, size: tuple[int, int]) -> Image.Image:
    return _fit(engine.blob_image(key, "RGB"), size)


def _fit(picture: Image.Image, size: tuple[int, int]) -> Image.Image:
    return picture if picture.size == size else picture.resize(size, Image.Resampling.LANCZOS)


def _pixels(picture: Image.Image) -> np.ndarray:
    return np.asarray(picture.convert("RGB"), dtype=np.uint8)
