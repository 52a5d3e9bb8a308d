"""Video models through the engine (job kind `video`), on the built-in tiny Wan and LTX-Video models
(random weights in the real architectures, saved and loaded back with `from_pretrained`): every
mode equals bare diffusers' pipeline for the same seed and inputs, frame by frame within 2/255
(Wan text-to-video, image-to-video and first-last-frame; LTX-Video text-to-video, image-to-video and
first-last-frame through its condition pipeline); `--motion` is what the family says it is; Extend
continues from the clip's last frame without repeating it; loops play as they should; progress and
cancel reach the clip's steps; the MP4 and the frames' parameters say what was drawn."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from config import ModelEntry, ModelRegistry
from generation.animation import video as clip_files
from generation.engine import Engine
from generation.errors import EngineUserError, JobCancelled
from generation.jobs import render_job
from generation.models import tiny_video
from generation.models.loader import ModelCache
from generation.parameters import parse_infotext
from generation.spec import ClipSpec, GenerationSpec
from storage.blobs import LocalBlobStore

TOLERANCE = 2  # of 255, per pixel
PROMPT = "a red fox running in the snow"
FOLDERS = {"tiny-wan": tiny_video.ensure_wan, "tiny-wan-i2v": tiny_video.ensure_wan_i2v, "tiny-ltx": tiny_video.ensure_ltx}
SAMPLERS = {"wan": "UniPC", "ltx": "Euler"}
SIZES = {"wan": 32, "ltx": 64}  # LTX-Video's VAE compresses 32x32 pixels into one latent


@pytest.fixture(scope="module")
def video_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("video-models")
    for ensure in FOLDERS.values():
        ensure(folder)
    return folder


@pytest.fixture(scope="module")
def engine(video_models: Path, tmp_path_factory: pytest.TempPathFactory, one_torch_thread: None) -> Engine:
    registry = ModelRegistry([ModelEntry(source=name) for name in FOLDERS])
    cache = ModelCache(registry, video_models, torch.device("cpu"), torch.float32, max_loaded=3)
    return Engine(cache, LocalBlobStore(tmp_path_factory.mktemp("video-blobs")))


def video_spec(model: str = "tiny-wan", **fields: Any) -> GenerationSpec:
    family = model.split("-")[1]
    clip = {"frames": 9, "fps": 16, **fields.pop("clip", {})}
    values: dict[str, Any] = {
        "kind": "video",
        "prompt": PROMPT,
        "model": model,
        "family": family,
        "width": SIZES[family],
        "height": SIZES[family],
        "steps": 4,
        "cfg": 5.0,
        "sampler": SAMPLERS[family],
        "seed": 3,
        **fields,
    }
    return GenerationSpec(**values, clip=ClipSpec(**clip))


def picture(seed: int, size: tuple[int, int] = (32, 32)) -> Image.Image:
    """A textured picture (a random VAE reads a flat one as nearly nothing)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def stored(engine: Engine, image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return engine.blobs.put(buffer.getvalue(), "png")


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def frames_of(rendered) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    return [pixels(image.png) for image in rendered.images]


def bare(
    video_models: Path,
    model: str,
    pipeline: str,
    *,
    scheduler: dict[str, Any] | None = None,
    lora: tuple[Path, float] | None = None,
    **call: Any,
) -> list[np.ndarray]:
    """What bare diffusers draws: the mode's pipeline class loaded from the same folder, as its docs
    show it, with the same seed and arguments; `lora` (file, weight) loaded with `load_lora_weights`
    (on a second expert too, with `load_into_transformer_2`) and weighted with `set_adapters`."""
    import diffusers

    pipe = getattr(diffusers, pipeline).from_pretrained(str(FOLDERS[model](video_models)), use_safetensors=True)
    if lora is not None:
        pipe.load_lora_weights(str(lora[0]), adapter_name="theirs")
        if getattr(pipe, "transformer_2", None) is not None:
            pipe.load_lora_weights(str(lora[0]), adapter_name="theirs", load_into_transformer_2=True)
        pipe.set_adapters(["theirs"], adapter_weights=[lora[1]])
    if scheduler:
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, **scheduler)
    pipe.set_progress_bar_config(disable=True)
    family = model.split("-")[1]
    arguments = {
        "prompt": PROMPT,
        "negative_prompt": "",
        "height": SIZES[family],
        "width": SIZES[family],
        "num_frames": 9,
        "num_inference_steps": 4,
        "guidance_scale": 5.0,
        "generator": torch.Generator("cpu").manual_seed(3),
        "output_type": "pil",
        **call,
    }
    with torch.inference_mode():
        frames = pipe(**arguments).frames[0]
    return [np.asarray(frame.convert("RGB")).astype(int) for frame in frames]


def assert_same_frames(ours: list[np.ndarray], theirs: list[np.ndarray]) -> None:
    assert len(ours) == len(theirs)
    for index, (mine, reference) in enumerate(zip(ours, theirs, strict=True)):
        difference = np.abs(mine - reference).max()
        assert difference <= TOLERANCE, f"frame {index} differs by {difference}/255"


def mean_difference(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return float(np.mean([np.abs(x - y).mean() for x, y in zip(a, b, strict=True)]))


LTX_DECODE = {"decode_timestep": 0.03, "decode_noise_scale": 0.025}


def test_wan_text_to_video_equals_bare_wan_pipeline(engine: Engine, video_models: Path) -> None:
    rendered = render_job(engine, video_spec(), job_id=7)
    ours = frames_of(rendered)
    assert_same_frames(ours, bare(video_models, "tiny-wan", "WanPipeline"))
    assert len({frame.tobytes() for frame in ours}) == 9  # it moves
    # The MP4 plays those frames at the clip's fps; the PNGs say what drew them
    assert rendered.clip is not None and (rendered.clip.frames, rendered.clip.fps) == (9, 16)
    info = clip_files.probe(rendered.clip.mp4)
    assert (info.frames, info.fps, info.width, info.height) == (9, 16, 32, 32)
    fields = parse_infotext(rendered.images[4].parameters)
    assert (fields["Frames"], fields["FPS"], fields["Video"], fields["Frame"]) == ("9", "16", "text-to-video", "4")
    assert (fields["Model family"], fields["Sampler"], fields["Seed"], fields["Job"]) == ("Wan", "UniPC", "3", "7")


def test_wan_image_to_video_fits_the_first_frame_and_equals_bare_diffusers(engine: Engine, video_models: Path) -> None:
    start = picture(1, (48, 40))  # another shape: scaled to cover 32x32 and centred, not stretched
    rendered = render_job(engine, video_spec("tiny-wan-i2v", init_image=stored(engine, start)))
    fitted = ImageOps.fit(start, (32, 32), Image.Resampling.LANCZOS)
    ours = frames_of(rendered)
    assert_same_frames(ours, bare(video_models, "tiny-wan-i2v", "WanImageToVideoPipeline", image=fitted))
    other = frames_of(render_job(engine, video_spec("tiny-wan-i2v", init_image=stored(engine, picture(2)))))
    assert mean_difference(ours, other) > 5  # the first frame steers the clip
    fields = parse_infotext(rendered.images[0].parameters)
    assert fields["Video"] == "image-to-video" and fields["Start frame"] == rendered_key(engine, start)[:10]


def rendered_key(engine: Engine, image: Image.Image) -> str:
    return stored(engine, image)  # content-addressed: the same picture, the same key


def test_wan_first_last_frame_equals_bare_diffusers(engine: Engine, video_models: Path) -> None:
    start, end = picture(1), picture(3)
    spec = video_spec("tiny-wan-i2v", init_image=stored(engine, start), clip={"end_image": stored(engine, end)})
    ours = frames_of(render_job(engine, spec))
    assert_same_frames(ours, bare(video_models, "tiny-wan-i2v", "WanImageToVideoPipeline", image=start, last_image=end))
    other_end = video_spec("tiny-wan-i2v", init_image=stored(engine, start), clip={"end_image": stored(engine, picture(5))})
    assert (
        max(np.abs(a - b).max() for a, b in zip(ours, frames_of(render_job(engine, other_end)), strict=True)) > 5
    )  # the last frame steers it too
    fields = parse_infotext(render_job(engine, spec).images[0].parameters)
    assert (fields["Video"], fields["End frame"]) == ("first-last-frame", spec.clip.end_image[:10])  # type: ignore[union-attr]


def test_ltx_video_equals_bare_diffusers_in_every_mode(engine: Engine, video_models: Path) -> None:
    """Text-to-video (LTXPipeline), image-to-video (LTXImageToVideoPipeline) and first-last-frame
    (LTXConditionPipeline: a condition at frame 0 and one at the last frame, its scheduler without
    dynamic shifting or a terminal stretch, so it can take its own timesteps), each with the clip's fps as LTX's frame rate and diffusers' decode settings."""
    start, end = picture(4, (64, 64)), picture(5, (64, 64))
    common = {"frame_rate": 16, **LTX_DECODE}
    assert_same_frames(frames_of(render_job(engine, video_spec("tiny-ltx"))), bare(video_models, "tiny-ltx", "LTXPipeline", **common))
    i2v = frames_of(render_job(engine, video_spec("tiny-ltx", init_image=stored(engine, start))))
    assert_same_frames(i2v, bare(video_models, "tiny-ltx", "LTXImageToVideoPipeline", image=start, **common))
    from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition

    spec = video_spec("tiny-ltx", init_image=stored(engine, start), clip={"end_image": stored(engine, end)})
    conditions = [LTXVideoCondition(image=start, frame_index=0), LTXVideoCondition(image=end, frame_index=8)]
    expected = bare(
        video_models,
        "tiny-ltx",
        "LTXConditionPipeline",
        scheduler={"use_dynamic_shifting": False, "shift_terminal": None},
        conditions=conditions,
        **common,
    )
    assert_same_frames(frames_of(render_job(engine, spec)), expected)


def test_motion_is_what_each_family_says(engine: Engine, video_models: Path) -> None:
    """Wan: words added to the prompt and the negative prompt; LTX-Video: the frame rate it is told."""
    plain = frames_of(render_job(engine, video_spec()))
    high = render_job(engine, video_spec(clip={"motion_amount": "high"}))
    expected = bare(
        video_models,
        "tiny-wan",
        "WanPipeline",
        prompt=f"{PROMPT}, dynamic, fast motion",
        negative_prompt="static, still picture, motionless",
    )
    assert_same_frames(frames_of(high), expected)
    assert mean_difference(frames_of(high), plain) > 3
    assert high.images[0].parameters.splitlines()[0] == PROMPT  # the parameters keep the prompt as written
    assert parse_infotext(high.images[0].parameters)["Motion"] == "high (prompt)"
    low = render_job(engine, video_spec("tiny-ltx", clip={"motion_amount": "low"}))
    assert_same_frames(frames_of(low), bare(video_models, "tiny-ltx", "LTXPipeline", frame_rate=24, **LTX_DECODE))  # 16 fps x 1.5
    assert mean_difference(frames_of(low), frames_of(render_job(engine, video_spec("tiny-ltx")))) > 1
    assert parse_infotext(low.images[0].parameters)["Motion"] == "low (frame rate)"


def test_extend_continues_from_the_last_frame_without_repeating_it(engine: Engine, video_models: Path) -> None:
    first = render_job(engine, video_spec("tiny-wan-i2v", init_image=stored(engine, picture(1))))
    keys = tuple(engine.blobs.put(image.png, "png") for image in first.images)
    longer = render_job(engine, video_spec("tiny-wan-i2v", clip={"frames": 5, "source": keys, "extend": True}))
    assert len(longer.images) == 9 + 4 and longer.clip is not None and longer.clip.frames == 13
    for old, new in zip(first.images, longer.images[:9], strict=True):
        assert np.array_equal(pixels(old.png), pixels(new.png))  # the clip so far, as it was
    # the new part starts at the previous clip's last frame (the same pixels), then image-to-video from it
    last = Image.open(io.BytesIO(first.images[-1].png)).convert("RGB")
    drawn = bare(video_models, "tiny-wan-i2v", "WanImageToVideoPipeline", image=last, num_frames=5)
    assert_same_frames(frames_of(longer)[9:], drawn[1:])
    fields = parse_infotext(longer.images[10].parameters)
    assert (fields["Frames"], fields["Extended from"], fields["Video"]) == ("13", "9 frames", "image-to-video")


def test_a_loop_plays_forward_then_back_unless_the_last_frame_closes_it(engine: Engine) -> None:
    pingpong = render_job(engine, video_spec(clip={"loop": True}))
    assert pingpong.clip is not None and clip_files.probe(pingpong.clip.mp4).frames == 2 * 9 - 2
    assert parse_infotext(pingpong.images[0].parameters)["Loop"] == "ping-pong"
    start = stored(engine, picture(1))
    closed = render_job(engine, video_spec("tiny-wan-i2v", init_image=start, clip={"loop": True, "end_image": start}))
    assert closed.clip is not None and clip_files.probe(closed.clip.mp4).frames == 9 - 1  # its last frame is its first
    assert parse_infotext(closed.images[0].parameters)["Loop"] == "first-last frame"


def test_progress_counts_the_steps_and_cancel_stops_the_clip(engine: Engine) -> None:
    seen: list[tuple[int, int]] = []
    render_job(engine, video_spec(), on_progress=lambda step, total: seen.append((step, total)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(JobCancelled):
        render_job(engine, video_spec(), should_stop=stop)
    assert len(calls) == 3  # stopped at the third step, before decoding
    # SDBOT_MAX_CLIP_GPU_SECONDS, as the clip carries it: past it, the clip stops at the next step
    # (a slow first step: the limit is passed when the second step reports)
    slow = video_spec(clip={"max_seconds": 0.05})
    with pytest.raises(EngineUserError, match=r"ran past the limit of 0.05 GPU-seconds a clip here and was stopped"):
        render_job(engine, slow, on_progress=lambda step, total: __import__("time").sleep(0.06))
    assert render_job(engine, video_spec(clip={"max_seconds": 600})).clip is not None  # within it: drawn


def test_the_engine_refuses_what_the_family_cant_draw(engine: Engine) -> None:
    with pytest.raises(EngineUserError, match="Wan 2.2 I2V A14B starts from a picture"):
        render_job(engine, video_spec("tiny-wan-i2v"))
    with pytest.raises(EngineUserError, match=r"Wan T2V draws .*can't start from a picture"):
        render_job(engine, video_spec(init_image=stored(engine, picture(1))))
    with pytest.raises(EngineUserError, match=r"Wan T2V draws 4k\+1 frames .* Try `--frames 9`"):
        render_job(engine, video_spec(clip={"frames": 8}))
