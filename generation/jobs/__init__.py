"""The job kinds: what each kind of job does, one module per kind, and the table that runs a
spec by its kind. A new job kind goes here: a module with `run(engine, spec, tracker)` (pictures)
or an answer function (text), and one line in `PICTURE_KINDS` or `ANSWER_KINDS` below.

- draw: txt2img and img2img          - painting: inpaint, outpaint (zoom out, pan)
- upscale: the four upscale methods  - facefix: face restoration
- instruct: Instruct Pix2Pix (`/edit`)  - answers: enhance and describe (candidate prompts)
- animate: AnimateDiff's animate and video2video  - deforum: an img2img loop along keyframes
- video: a video model's clip (Wan, LTX-Video): text-to-video, image-to-video, first-last-frame, Extend
A job with `spec.controls` is steered by its ControlNets in every pass, whatever its kind draws
(generation.control); its maps are part of what `render_job` returns, each a PNG whose
`parameters` say what made it (`parameters.control_map_infotext`).

Job modules may import the engine core (`generation.engine`), `spec`, `errors`, `parameters` and
the subpackages of what they use (imaging, prompts, models, assets, text_models); nothing but
the worker (and tests and benches) imports this package, so the engine never imports a job kind.

`run_job` also owns what every picture job shares: wildcard picks per image (each image of a
wildcard job is drawn alone, from its own seed, so image i equals the single image made with
seed + i) and the PNG with A1111 `parameters`; and what every clip shares (`spec.clip`): its
frames as PNGs with the clip's parameters, and the MP4 and GIF made from them. An upscale or face
fix of a clip runs its kind on each frame (`GenerationSpec.frame_spec`).
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PIL import Image

from generation.animation import video as clip_files  # `video` is the job kind's module
from generation.control import preprocess
from generation.engine import Engine, ProgressFn, Tracker
from generation.errors import EngineUserError, JobCancelled
from generation.jobs import animate, answers, deforum, draw, facefix, instruct, painting, upscale, video
from generation.parameters import control_map_infotext, infotext, png
from generation.prompts.wildcards import has_wildcards
from generation.spec import CLIP_KINDS, GenerationSpec

PictureJob = Callable[[Engine, GenerationSpec, Tracker], list[Image.Image]]
TextJob = Callable[[Engine, GenerationSpec, Callable[[], bool]], list[dict[str, Any]]]

PICTURE_KINDS: dict[str, PictureJob] = {
    "txt2img": draw.generate,
    "img2img": draw.generate,
    "inpaint": painting.inpaint,
    "outpaint": painting.outpaint,
    "upscale": upscale.upscale,
    "facefix": facefix.fix_faces,
    "instruct": instruct.edit,
    "animate": animate.animate,
    "video2video": animate.video2video,
    "deforum": deforum.deforum,
    "video": video.video,
}
ANSWER_KINDS: dict[str, TextJob] = {"enhance": answers.enhance, "describe": answers.describe}


@dataclass(frozen=True)
class RenderedImage:
    index: int
    seed: int
    png: bytes
    width: int
    height: int
    parameters: str
    safety_score: float | None = None  # the safety classifier's (`scored`); None: not scored


@dataclass(frozen=True)
class EncodedClip:
    """A clip's playable files, made from its frames (the job's images) by generation.animation.video."""

    mp4: bytes  # H.264, yuv420p, moov atom first (plays while it loads)
    gif: bytes
    fps: int
    width: int
    height: int
    frames: int  # frames drawn; with `loop` the files play them forward, then backward
    loop: bool


@dataclass(frozen=True)
class Rendered:
    images: list[RenderedImage]
    maps: list[bytes]  # PNGs of the control maps the job was steered by, in the order of spec.controls
    clip: EncodedClip | None = None  # a clip job's MP4 and GIF; its frames are `images`


def run_job(
    engine: Engine,
    spec: GenerationSpec,
    *,
    job_id: int | None = None,
    on_progress: ProgressFn = lambda step, total: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> list[RenderedImage]:
    """Run a picture job on the engine: its PNGs, each with its parameters."""
    return render_job(engine, spec, job_id=job_id, on_progress=on_progress, should_stop=should_stop).images


def render_job(
    engine: Engine,
    spec: GenerationSpec,
    *,
    job_id: int | None = None,
    on_progress: ProgressFn = lambda step, total: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Rendered:
    """Run a picture job on the engine: its PNGs and the control maps that steered it."""
    job = PICTURE_KINDS.get(spec.kind)
    if job is None:
        raise EngineUserError(f"I can't draw jobs of kind `{spec.kind}`.")
    tracker = Tracker(on_progress, should_stop)
    if spec.controls:
        tracker.controls = preprocess.prepare(engine, spec)
    maps = (
        [
            png(picture, control_map_infotext(spec, index, picture.size, job_id=job_id))
            for index, picture in enumerate(tracker.controls.maps)
        ]
        if tracker.controls
        else []
    )
    if spec.clip is not None:
        return _render_clip(engine, spec, job, tracker, job_id, maps)
    if not spec.wildcards and not has_wildcards(f"{spec.prompt}\n{spec.negative_prompt}"):
        return Rendered([encode(spec, index, image, job_id) for index, image in enumerate(job(engine, spec, tracker))], maps)
    # Wildcards: each image gets its own picks, from its own seed, so it is drawn alone with
    # its own prompt; image i then equals the single image made with seed + i.
    tracker.planned = spec.n * spec.steps if spec.kind == "txt2img" else 0
    rendered = []
    for index in range(spec.n):
        single = spec.image_spec(index)
        [image] = job(engine, single, tracker)
        rendered.append(encode(single, index, image, job_id, template=spec, index_seed=single.seed))
    return Rendered(rendered, maps)


def _render_clip(
    engine: Engine, spec: GenerationSpec, job: PictureJob, tracker: Tracker, job_id: int | None, maps: list[bytes]
) -> Rendered:
    clip = spec.clip
    assert clip is not None
    template = None
    if spec.wildcards or has_wildcards(f"{spec.prompt}\n{spec.negative_prompt}"):
        # one pick for the whole clip, from its seed (a clip is one picture in motion)
        template, spec = spec, spec.image_spec(0).evolve(n=spec.n)
    if spec.kind in CLIP_KINDS:
        frames = job(engine, spec, tracker)
    else:  # an upscale or face fix of a clip: its kind, frame by frame
        frames = []
        for index in range(clip.frames):
            tracker.check()
            [frame] = job(engine, spec.frame_spec(index), tracker)
            frames.append(frame)
            tracker.on_progress(index + 1, clip.frames)
    images = []
    for index, frame in enumerate(frames):
        # AnimateDiff draws a whole clip from one seed; Deforum draws frame k with seed + k
        seed = spec.seed + index if spec.kind == "deforum" else spec.seed
        parameters = infotext(spec, seed, job_id=job_id, size=frame.size, template=template, frame=index)
        images.append(RenderedImage(index, seed, png(frame, parameters), frame.width, frame.height, parameters))
    played = clip_files.playback_frames(frames, clip.loop and not closed_loop(spec))
    if closed_loop(spec):  # its last frame is its first: played once, so the loop doesn't stutter
        played = played[:-1]
    encoded = EncodedClip(
        mp4=clip_files.encode_mp4(played, clip.fps, comment=images[0].parameters),
        gif=clip_files.encode_gif(played, clip.fps),
        fps=clip.fps,
        width=frames[0].width,
        height=frames[0].height,
        frames=len(frames),
        loop=clip.loop,
    )
    return Rendered(images, maps, encoded)


def closed_loop(spec: GenerationSpec) -> bool:
    """A video model's `--loop` drawn as first-last-frame back to its first frame: it loops by
    itself, so it plays forward only (other loops play forward then back)."""
    clip = spec.clip
    return clip is not None and spec.kind == "video" and clip.loop and clip.end_image is not None and clip.end_image == spec.init_image


def scored(engine: Engine, rendered: Rendered) -> Rendered:
    """`rendered` with the safety classifier's score on each picture (every frame of a clip),
    when one is configured (SDBOT_SAFETY_CLASSIFIER); as it is otherwise."""
    pictures = [Image.open(io.BytesIO(image.png)) for image in rendered.images]
    scores = engine.tools.safety_scores(pictures)
    if scores is None:
        return rendered
    images = [dataclasses.replace(image, safety_score=score) for image, score in zip(rendered.images, scores, strict=True)]
    return dataclasses.replace(rendered, images=images)


def answer_job(
    engine: Engine,
    spec: GenerationSpec,
    *,
    job_id: int | None = None,
    on_progress: ProgressFn = lambda step, total: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> dict[str, Any]:
    """Run a text job (`enhance`, `describe`): candidate prompts, as the job's result."""
    job = ANSWER_KINDS.get(spec.kind)
    if job is None:
        raise EngineUserError(f"jobs of kind `{spec.kind}` draw pictures; they have no text answer.")
    on_progress(0, 1)
    candidates = job(engine, spec, should_stop)
    if should_stop():
        raise JobCancelled()
    on_progress(1, 1)
    return {"candidates": candidates}


def encode(
    spec: GenerationSpec,
    index: int,
    image: Image.Image,
    job_id: int | None,
    *,
    template: GenerationSpec | None = None,
    index_seed: int | None = None,
) -> RenderedImage:
    """The PNG of image `index`. `template`: the job as written, when this image's prompt is
    its wildcard picks (`spec`), so the parameters keep both."""
    seed = index_seed if index_seed is not None else spec.seed + index
    parameters = infotext(spec, seed, job_id=job_id, size=image.size, template=template)
    return RenderedImage(index, seed, png(image, parameters), image.width, image.height, parameters)
