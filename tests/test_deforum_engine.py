"""/deforum's runner (generation/jobs/deforum.py) in the engine, on the tiny model at 64 px and 4
steps. `Engine.diffuse` is wrapped to record what every frame's pass gets (its spec, its input
picture, its strength) and what it draws, so the tests check the loop itself:

- `/deforum "0: a forest, 4: a city" --frames 8 --zoom "0:(1.1)"` gives 8 frames; frame 0 is
  txt2img; the input of frame k is frame k-1 warped by Motion(zoom=1.1) and colour-matched to
  frame 0, exactly (and that check would catch a missing warp: the input differs from the
  unwarped frame); with zoom 1.0 and colour coherence off the input is frame k-1 itself;
- the prompt switches at frame 4, frame k has seed + k, the strength schedule's value at k is
  the pass's strength, and progress runs once to every frame's denoising steps;
- a picture to start from: frame 0 is img2img of it (resized) at frame 0's strength;
- Longer: the clip so far is kept and continued from its last frame, colour-matched to its
  first, with the schedules at absolute frame numbers; 4 frames and then 3 more equal 7 at once;
- the same job twice draws the same frames; a cancel stops between frames (JobCancelled); a
  strength that would run no step is refused before anything is drawn.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from config import ModelEntry, ModelRegistry
from generation.animation.keyframes import schedule_values
from generation.animation.warp import Motion, match_colors, warp
from generation.engine import Engine, Tracker
from generation.errors import EngineUserError, JobCancelled
from generation.jobs.deforum import IN_MEMORY_FRAME, deforum
from generation.models.loader import ModelCache
from generation.spec import ClipSpec, GenerationSpec
from storage.blobs import LocalBlobStore

STEPS = 4


@pytest.fixture(scope="module")
def engine(models_dir: Path, tmp_path_factory: pytest.TempPathFactory, one_torch_thread: None) -> Engine:
    cache = ModelCache(ModelRegistry([ModelEntry(source="tiny")]), models_dir, torch.device("cpu"), torch.float32)
    return Engine(cache, LocalBlobStore(tmp_path_factory.mktemp("deforum-blobs")))


def deforum_spec(
    prompt: str = "0: a forest, 4: a city", *, strength: float = 0.6, init_image: str | None = None, **clip: Any
) -> GenerationSpec:
    values: dict[str, Any] = {"frames": 8, "fps": 8}
    values.update(clip)
    return GenerationSpec(
        kind="deforum",
        prompt=prompt,
        negative_prompt="blurry",
        model="tiny",
        width=64,
        height=64,
        steps=STEPS,
        cfg=7.0,
        sampler="Euler",
        seed=11,
        strength=strength,
        init_image=init_image,
        clip=ClipSpec(**values),
    )


@dataclass
class Pass:
    pipeline: str
    spec: GenerationSpec
    strength: float | None
    image: np.ndarray | None  # the input picture of an img2img pass
    output: np.ndarray | None = None


@dataclass
class Recorder:
    passes: list[Pass] = field(default_factory=list)
    progress: list[tuple[int, int]] = field(default_factory=list)


@pytest.fixture
def recorder(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Recorder:
    """Every `engine.diffuse` call of the test, with what it was given and what it drew."""
    record = Recorder()
    real = engine.diffuse

    def diffuse(spec: GenerationSpec, pipeline_kind: str, tracker: Tracker, **arguments: Any) -> list[Image.Image]:
        image = arguments.get("image")
        entry = Pass(pipeline_kind, spec, arguments.get("strength"), None if image is None else pixels(image))
        record.passes.append(entry)
        drawn = real(spec, pipeline_kind, tracker, **arguments)
        entry.output = pixels(drawn[0])
        return drawn

    monkeypatch.setattr(engine, "diffuse", diffuse)
    return record


def run(
    engine: Engine, spec: GenerationSpec, record: Recorder | None = None, should_stop: Callable[[], bool] = lambda: False
) -> list[np.ndarray]:
    on_progress = (lambda step, total: record.progress.append((step, total))) if record else (lambda step, total: None)
    return [pixels(frame) for frame in deforum(engine, spec, Tracker(on_progress, should_stop))]


def pixels(picture: Image.Image) -> np.ndarray:
    assert picture.size == (64, 64)
    return np.asarray(picture.convert("RGB"), dtype=np.uint8).copy()


def stored(engine: Engine, picture: np.ndarray | Image.Image) -> str:
    image = picture if isinstance(picture, Image.Image) else Image.fromarray(picture)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return engine.blobs.put(buffer.getvalue(), "png")


def img2img_steps(strength: float) -> int:
    return int(STEPS * strength)


# --- (a) the motion between frames --------------------------------------------------------------


def test_each_frame_is_the_previous_one_zoomed_colour_matched_and_redrawn(engine: Engine, recorder: Recorder) -> None:
    frames = run(engine, deforum_spec(zoom="0:(1.1)"), recorder)
    assert len(frames) == 8 and len(recorder.passes) == 8
    first, *rest = recorder.passes
    assert first.pipeline == "txt2img" and first.image is None and first.spec.kind == "txt2img"
    for k, drawn in enumerate(recorder.passes):
        assert drawn.output is not None and np.array_equal(frames[k], drawn.output)  # output k is frame k, as drawn
    for k, drawn in enumerate(rest, start=1):
        assert drawn.pipeline == "img2img" and drawn.image is not None
        expected = match_colors(warp(frames[k - 1], Motion(zoom=1.1)), frames[0])
        assert np.abs(drawn.image.astype(int) - expected.astype(int)).max() <= 1
        # ... and that check can fail: the previous frame without the zoom is another picture
        unwarped = match_colors(frames[k - 1], frames[0])
        assert np.abs(drawn.image.astype(int) - unwarped.astype(int)).mean() > 5
    assert not np.array_equal(frames[1], frames[2])


def test_zoom_one_without_colour_coherence_redraws_the_previous_frame_itself(engine: Engine, recorder: Recorder) -> None:
    frames = run(engine, deforum_spec(frames=3, zoom="0:(1.0)", color_coherence=False), recorder)
    for k, drawn in enumerate(recorder.passes[1:], start=1):
        assert drawn.image is not None and np.array_equal(drawn.image, frames[k - 1])


def test_angle_and_shifts_follow_their_schedules_frame_by_frame(engine: Engine, recorder: Recorder) -> None:
    spec = deforum_spec(frames=4, angle="0:(0), 3:(9)", tx="0:(t)", ty="0:(-2)", color_coherence=False)
    frames = run(engine, spec, recorder)
    angles = schedule_values("0:(0), 3:(9)", 4)
    for k, drawn in enumerate(recorder.passes[1:], start=1):
        expected = warp(frames[k - 1], Motion(zoom=1.0, angle=angles[k], tx=float(k), ty=-2.0))
        assert drawn.image is not None and np.array_equal(drawn.image, expected)


# --- (b) prompts, seeds, strengths, progress -----------------------------------------------------


def test_prompt_seed_and_strength_change_by_frame(engine: Engine, recorder: Recorder) -> None:
    strength = "0:(0.5), 7:(0.85)"
    spec = deforum_spec(zoom="0:(1.02)", strength_schedule=strength)
    run(engine, spec, recorder)
    prompts = [drawn.spec.prompt for drawn in recorder.passes]
    assert prompts == ["a forest"] * 4 + ["a city"] * 4
    assert all(drawn.spec.negative_prompt == "blurry" for drawn in recorder.passes)
    assert [drawn.spec.seed for drawn in recorder.passes] == [11 + k for k in range(8)]
    assert all(drawn.spec.n == 1 and drawn.spec.clip is None for drawn in recorder.passes)
    values = schedule_values(strength, 8)
    assert [drawn.strength for drawn in recorder.passes[1:]] == pytest.approx(values[1:])
    assert [drawn.spec.strength for drawn in recorder.passes[1:]] == pytest.approx(values[1:])
    assert all(drawn.spec.init_image == IN_MEMORY_FRAME for drawn in recorder.passes[1:])
    # progress: one run from the first step to every frame's steps (txt2img: all, img2img: int(steps * strength))
    planned = STEPS + sum(img2img_steps(value) for value in values[1:])
    assert {total for _, total in recorder.progress} == {planned}
    assert [step for step, _ in recorder.progress] == list(range(1, planned + 1))


def test_without_a_schedule_every_frame_has_the_jobs_strength(engine: Engine, recorder: Recorder) -> None:
    run(engine, deforum_spec(frames=3, strength=0.75), recorder)
    assert [drawn.strength for drawn in recorder.passes] == [None, 0.75, 0.75]
    assert recorder.progress[-1] == (STEPS + 2 * img2img_steps(0.75),) * 2


def test_a_picture_to_start_from_is_frame_zeros_img2img_input(engine: Engine, recorder: Recorder) -> None:
    picture = Image.new("RGB", (96, 80), (30, 120, 200))
    ImageDraw.Draw(picture).rectangle((10, 10, 50, 40), fill=(250, 200, 40))
    key = stored(engine, picture)
    frames = run(engine, deforum_spec(frames=2, init_image=key, strength_schedule="0:(0.5), 1:(0.75)"), recorder)
    start = recorder.passes[0]
    assert start.pipeline == "img2img" and start.spec.init_image == key and start.strength == 0.5
    assert start.image is not None and np.array_equal(start.image, pixels(picture.resize((64, 64), Image.Resampling.LANCZOS)))
    assert recorder.passes[1].image is not None
    assert np.array_equal(recorder.passes[1].image, match_colors(warp(frames[0], Motion()), frames[0]))
    assert recorder.progress[-1] == (img2img_steps(0.5) + img2img_steps(0.75),) * 2


# --- (c) Longer -----------------------------------------------------------------------------------


def test_longer_continues_from_the_last_frame_with_the_schedules_offset(engine: Engine, recorder: Recorder) -> None:
    schedules = {"zoom": "0:(1 + 0.02*t)", "strength_schedule": "0:(0.5), 3:(0.75)"}
    whole = run(engine, deforum_spec("0: a forest, 5: a city", frames=7, **schedules))
    first = run(engine, deforum_spec("0: a forest, 5: a city", frames=4, **schedules))
    keys = tuple(stored(engine, frame) for frame in first)
    # the first run's picture stays in the spec (Longer copies it) but is not drawn from again
    longer = deforum_spec("0: a forest, 5: a city", frames=3, source=keys, extend=True, init_image="gone", **schedules)
    recorder.passes.clear()
    frames = run(engine, longer, recorder)
    assert len(frames) == 7
    assert all(np.array_equal(a, b) for a, b in zip(frames[:4], first, strict=True))  # the clip so far, kept
    assert len(recorder.passes) == 3 and all(drawn.pipeline == "img2img" for drawn in recorder.passes)
    expected = match_colors(warp(first[-1], Motion(zoom=1 + 0.02 * 4)), first[0])
    assert recorder.passes[0].image is not None and np.array_equal(recorder.passes[0].image, expected)
    assert [drawn.spec.seed for drawn in recorder.passes] == [15, 16, 17]
    assert [drawn.spec.prompt for drawn in recorder.passes] == ["a forest", "a city", "a city"]
    assert [drawn.strength for drawn in recorder.passes] == pytest.approx([0.75] * 3)
    assert recorder.progress[-1] == (3 * img2img_steps(0.75),) * 2
    # 4 frames and then 3 more are the 7 frames drawn at once
    assert all(np.array_equal(a, b) for a, b in zip(frames, whole, strict=True))


# --- (d) determinism, cancel, refusals -----------------------------------------------------------


def test_the_same_job_twice_draws_the_same_frames(engine: Engine) -> None:
    spec = deforum_spec(frames=4, zoom="0:(1.05)", angle="0:(2)")
    once, again = run(engine, spec), run(engine, spec)
    assert all(np.array_equal(a, b) for a, b in zip(once, again, strict=True))
    other = run(engine, spec.model_copy(update={"seed": 12}))
    assert not np.array_equal(once[0], other[0])


def test_a_cancel_stops_the_clip_between_frames(engine: Engine, recorder: Recorder) -> None:
    with pytest.raises(JobCancelled):
        run(engine, deforum_spec(), recorder, should_stop=lambda: len(recorder.passes) >= 3)
    assert len(recorder.passes) <= 3  # frames 3..7 were never started


def test_a_strength_that_runs_no_step_is_refused_before_drawing(engine: Engine, recorder: Recorder) -> None:
    with pytest.raises(EngineUserError, match="0.233333 at frame 2 and 4 steps no denoising step"):  # 4 * 0.23 < 1
        run(engine, deforum_spec(frames=4, strength_schedule="0:(0.5), 3:(0.1)"), recorder)
    assert recorder.passes == []
