"""AnimateDiff in the engine, on the tiny model and its built-in tiny motion adapter (random
weights in the real architecture, saved and loaded back through `from_pretrained`): frames equal
bare `AnimateDiffPipeline` / `AnimateDiffVideoToVideoPipeline` (and FreeNoise's context windows)
frame by frame; the motion layers tie the frames together; a camera move changes the clip and
weight 0 is none; Longer keeps the clip so far; an upscale of a clip works frame by frame; the MP4
decodes to the frames at the clip's fps; the frames' PNGs carry the clip's parameters."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from config import ModelEntry, ModelRegistry
from generation.animation import video
from generation.engine import Engine
from generation.errors import EngineUserError
from generation.jobs import render_job
from generation.models.loader import ModelCache
from generation.models.motion import ensure_tiny_motion
from generation.models.tiny import TINY_VERSION
from generation.parameters import parse_infotext
from generation.spec import CameraRef, ClipSpec, GenerationSpec
from storage.blobs import LocalBlobStore

TOLERANCE = 2  # of 255, per pixel


@pytest.fixture(scope="module")
def engine(models_dir: Path, tmp_path_factory: pytest.TempPathFactory, one_torch_thread: None) -> Engine:
    cache = ModelCache(ModelRegistry([ModelEntry(source="tiny")]), models_dir, torch.device("cpu"), torch.float32)
    return Engine(cache, LocalBlobStore(tmp_path_factory.mktemp("animation-blobs")))


def clip_spec(kind: str = "animate", **clip: object) -> GenerationSpec:
    values: dict[str, object] = {"frames": 8, "fps": 8, "motion": "tiny"}
    values.update(clip)
    strength = 0.6 if kind == "video2video" or values.get("extend") else None
    return GenerationSpec(
        kind=kind,
        prompt="a fox running",
        model="tiny",
        width=64,
        height=64,
        steps=4,
        cfg=7.0,  # type: ignore[arg-type]
        sampler="Euler",
        seed=2,
        strength=strength,
        clip=ClipSpec(**values),
    )


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def frames_of(pictures: list[Image.Image]) -> list[np.ndarray]:
    return [np.asarray(picture.convert("RGB")).astype(int) for picture in pictures]


def bare(models_dir: Path, kind: str = "animate", *, free_noise: tuple[int, int] | None = None, **call) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    """Bare diffusers, as its AnimateDiff docs show it, on the same saved folders."""
    from diffusers import (
        AnimateDiffPipeline,
        AnimateDiffVideoToVideoPipeline,
        EulerDiscreteScheduler,
        MotionAdapter,
        StableDiffusionPipeline,
    )

    adapter = MotionAdapter.from_pretrained(ensure_tiny_motion(models_dir) / "adapter")
    base = StableDiffusionPipeline.from_pretrained(str(models_dir / TINY_VERSION), safety_checker=None, requires_safety_checker=False)
    cls = AnimateDiffPipeline if kind == "animate" else AnimateDiffVideoToVideoPipeline
    pipe = cls.from_pipe(base, motion_adapter=adapter)
    pipe.scheduler = EulerDiscreteScheduler.from_config(base.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    if free_noise is not None:
        pipe.enable_free_noise(context_length=free_noise[0], context_stride=free_noise[1])
    result = pipe(prompt="a fox running", num_inference_steps=4, guidance_scale=7.0, generator=torch.Generator().manual_seed(2), **call)
    return frames_of(result.frames[0])


def assert_same_frames(ours: list[np.ndarray], theirs: list[np.ndarray]) -> None:
    assert len(ours) == len(theirs)
    for index, (mine, reference) in enumerate(zip(ours, theirs, strict=True)):
        difference = np.abs(mine - reference).max()
        assert difference <= TOLERANCE, f"frame {index} differs by {difference}/255"


def test_an_animation_equals_bare_animatediff_frame_by_frame(engine: Engine, models_dir: Path) -> None:
    rendered = render_job(engine, clip_spec())
    ours = [pixels(image.png) for image in rendered.images]
    assert_same_frames(ours, bare(models_dir, num_frames=8, height=64, width=64))
    assert len({frame.tobytes() for frame in ours}) == 8  # frames differ: it moves
    # The MP4 plays those frames at the clip's fps
    assert rendered.clip is not None and rendered.clip.frames == 8 and rendered.clip.fps == 8
    info = video.probe(rendered.clip.mp4)
    assert (info.frames, info.fps, info.width, info.height) == (8, 8, 64, 64)
    decoded, rate = video.read_frames(rendered.clip.mp4, max_frames=100)
    assert len(decoded) == 8 and rate == 8
    # H.264 is lossy, but each decoded frame is its own frame, not another's
    for index, picture in enumerate(decoded):
        errors = [np.abs(np.asarray(picture.convert("RGB")).astype(int) - frame).mean() for frame in ours]
        assert int(np.argmin(errors)) == index


def test_the_frames_carry_the_clips_parameters(engine: Engine) -> None:
    rendered = render_job(engine, clip_spec(frames=8, fps=12), job_id=5)
    fields = parse_infotext(rendered.images[3].parameters)
    assert fields["Frames"] == "8" and fields["FPS"] == "12" and fields["Motion module"] == "tiny"
    assert fields["Frame"] == "3" and fields["Seed"] == "2" and fields["Job"] == "5"
    assert Image.open(io.BytesIO(rendered.images[3].png)).info["parameters"] == rendered.images[3].parameters
    import av  # the MP4 carries them too: the first frame's parameters, in its comment tag

    assert rendered.clip is not None
    with av.open(io.BytesIO(rendered.clip.mp4)) as container:
        assert container.metadata.get("comment") == rendered.images[0].parameters


def test_a_long_clip_is_drawn_in_context_windows_as_freenoise_draws_it(engine: Engine, models_dir: Path) -> None:
    rendered = render_job(engine, clip_spec(frames=12, context=8, stride=4))
    ours = [pixels(image.png) for image in rendered.images]
    assert_same_frames(ours, bare(models_dir, num_frames=12, height=64, width=64, free_noise=(8, 4)))
    whole = bare(models_dir, num_frames=12, height=64, width=64)  # the windows are not a no-op
    assert max(np.abs(mine - other).mean() for mine, other in zip(ours, whole, strict=True)) > 1
    # ... and the pipeline is left as it was: the next short clip is drawn whole again
    again = [pixels(image.png) for image in render_job(engine, clip_spec()).images]
    assert_same_frames(again, bare(models_dir, num_frames=8, height=64, width=64))


def stored_frames(engine: Engine, count: int) -> tuple[list[str], list[Image.Image]]:
    """A clip to restyle: a disc moving across a gradient, as PNG blobs."""
    keys, pictures = [], []
    for index in range(count):
        picture = Image.new("RGB", (64, 64), (40 + index * 10, 90, 160 - index * 10))
        ImageDraw.Draw(picture).ellipse((4 + index * 5, 20, 28 + index * 5, 44), fill=(240, 220, 60))
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        keys.append(engine.blobs.put(buffer.getvalue(), "png"))
        pictures.append(picture)
    return keys, pictures


def test_video2video_equals_bare_animatediff_video_to_video(engine: Engine, models_dir: Path) -> None:
    keys, pictures = stored_frames(engine, 8)
    rendered = render_job(engine, clip_spec("video2video", source=tuple(keys)))
    ours = [pixels(image.png) for image in rendered.images]
    assert_same_frames(ours, bare(models_dir, "video2video", video=pictures, strength=0.6, height=64, width=64))


def test_the_motion_layers_tie_the_frames_together(engine: Engine) -> None:
    """Changing only the last frame's starting noise changes the first frame: the frames are drawn
    together. Drawn as separate pictures, frame 0 would stay the same."""
    loaded = engine.models.get("tiny")
    pipe = engine.motion.pipeline(loaded, "animate", "tiny")
    latents = torch.randn((1, 4, 8, 8, 8), generator=torch.Generator().manual_seed(7))
    moved = latents.clone()
    moved[:, :, 7] = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(8))

    def first_frame(start: torch.Tensor) -> np.ndarray:
        result = pipe(prompt="a fox", num_frames=8, height=64, width=64, num_inference_steps=2, latents=start.clone())
        return np.asarray(result.frames[0][0]).astype(int)

    assert np.abs(first_frame(latents) - first_frame(moved)).mean() > 1


def test_a_camera_move_changes_the_clip_and_weight_zero_is_none(engine: Engine) -> None:
    plain = [pixels(image.png) for image in render_job(engine, clip_spec()).images]
    zoomed = [pixels(image.png) for image in render_job(engine, clip_spec(cameras=(CameraRef(name="tiny-zoom"),))).images]
    assert np.mean([np.abs(a - b).mean() for a, b in zip(plain, zoomed, strict=True)]) > 1
    off = render_job(engine, clip_spec(cameras=(CameraRef(name="tiny-zoom", weight=0),))).images
    assert_same_frames([pixels(image.png) for image in off], plain)
    # ... and the camera is off again for the next clip that doesn't name it
    assert_same_frames([pixels(image.png) for image in render_job(engine, clip_spec()).images], plain)


def test_an_unknown_camera_move_is_a_clear_error(engine: Engine) -> None:
    with pytest.raises(EngineUserError, match="camera move `pan-left` is not configured"):
        render_job(engine, clip_spec(cameras=(CameraRef(name="pan-left"),)))


def test_longer_keeps_the_clip_so_far_and_continues_from_its_last_frame(engine: Engine) -> None:
    first = render_job(engine, clip_spec())
    keys = tuple(engine.blobs.put(image.png, "png") for image in first.images)
    longer = render_job(engine, clip_spec(frames=8, source=keys, extend=True))
    assert len(longer.images) == 16 and longer.clip is not None and longer.clip.frames == 16
    for old, new in zip(first.images, longer.images[:8], strict=True):
        assert np.abs(pixels(old.png) - pixels(new.png)).max() <= 1  # the frames so far, as they were
    # the new frames are video2video of the last frame held still, at the job's strength
    held = render_job(engine, clip_spec("video2video", source=(keys[-1],) * 8))
    assert_same_frames([pixels(image.png) for image in longer.images[8:]], [pixels(image.png) for image in held.images])
    assert parse_infotext(longer.images[12].parameters)["Frames"] == "16"


def test_an_upscale_of_a_clip_upscales_each_frame(engine: Engine) -> None:
    keys, pictures = stored_frames(engine, 3)
    spec = GenerationSpec(
        kind="upscale",
        prompt="a fox",
        model="tiny",
        width=128,
        height=128,
        steps=4,
        cfg=7.0,
        sampler="Euler",
        seed=2,
        scale=2.0,
        upscale_method="lanczos",
        clip=ClipSpec(frames=3, fps=6, source=tuple(keys)),
    )
    rendered = render_job(engine, spec)
    assert len(rendered.images) == 3 and rendered.clip is not None
    for image, picture in zip(rendered.images, pictures, strict=True):
        expected = np.asarray(picture.resize((128, 128), Image.Resampling.LANCZOS)).astype(int)
        assert np.abs(pixels(image.png) - expected).max() <= 1
    assert (video.probe(rendered.clip.mp4).width, rendered.clip.fps) == (128, 6)


def test_a_wildcard_is_picked_once_for_the_whole_clip(engine: Engine) -> None:
    spec = clip_spec().model_copy(update={"prompt": "a {fox|cat|owl} running"})
    rendered = render_job(engine, spec)
    prompts = {image.parameters.splitlines()[0] for image in rendered.images}
    assert len(prompts) == 1 and "{" not in next(iter(prompts))
    assert parse_infotext(rendered.images[0].parameters)["Template"] == "a {fox|cat|owl} running"
