"""The job kinds: what each kind of job does, one module per kind, and the table that runs a
spec by its kind. A new job kind goes here: a module with `run(engine, spec, tracker)` (pictures)
or an answer function (text), and one line in `PICTURE_KINDS` or `ANSWER_KINDS` below.

- draw: txt2img and img2img          - painting: inpaint, outpaint (zoom out, pan)
- upscale: the four upscale methods  - facefix: face restoration
- instruct: Instruct Pix2Pix (`/edit`)  - answers: enhance and describe (candidate prompts)
- animate: AnimateDiff's animate and video2video  - deforum: an img2img loop along keyframes
- video: a video model's clip (Wan, LTX-Video): text-to-video, image-to-video, first-last-frame, Extend
- detail: ADetailer's pass (faces, hands, people repainted at native size): the Detail button's
  job, and after the drawing of any txt2img or img2img job with `spec.detail` (`render_job`)
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
from generation.jobs import animate, answers, compare, deforum, detail, draw, facefix, instruct, painting, upscale, video
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
    "detail": detail.detail,
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
    # The drawn picture while its PNG is still to be made (`render_job(..., defer_png=True)`:
    # `png` is b"" until `encoded` makes it, off the engine thread); None once encoded.
    picture: Image.Image | None = dataclasses.field(default=None, repr=False, compare=False)


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
    notes: tuple[str, ...] = ()  # lines for the person with the result (`--detail` that found nothing)
    grid: bytes | None = None  # /compare: the labelled grid of its cells (a PNG); the cells are `images`


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
    defer_png: bool = False,
) -> Rendered:
    """Run a picture job on the engine: its PNGs and the control maps that steered it.
    `defer_png`: a still's pictures are handed back drawn but not yet encoded (`encoded` makes
    their PNGs), so the worker encodes them on another thread while the engine draws the next
    job (clips, comparisons and control maps are encoded here as before)."""
    if spec.compare is not None:
        return _render_compare(engine, spec, job_id, on_progress, should_stop)
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
    notes: list[str] = []
    if not spec.chaos and not spec.wildcards and not has_wildcards(f"{spec.prompt}\n{spec.negative_prompt}"):
        if spec.detail is not None and spec.kind != "detail":  # progress counts the detail steps too
            tracker.planned = detail.drawing_steps(spec) + detail.planned_steps(spec, spec.n)
        images = _detailed(engine, spec, job(engine, spec, tracker), tracker, notes)
        return Rendered(
            [encode(spec, index, image, job_id, defer=defer_png) for index, image in enumerate(images)], maps, notes=tuple(notes)
        )
    # Wildcards and --chaos: each image gets its own picks and variation, from its own seed, so it
    # is drawn alone with its own prompt; image i then equals the single image made with seed + i.
    tracker.planned = spec.n * spec.steps if spec.kind == "txt2img" else 0
    if spec.detail is not None and spec.kind != "detail":
        tracker.planned += detail.planned_steps(spec, spec.n)
    rendered = []
    for index in range(spec.n):
        single = spec.image_spec(index)
        [image] = _detailed(engine, single, job(engine, single, tracker), tracker, notes, first=index, of=spec.n)
        rendered.append(encode(single, index, image, job_id, template=spec, index_seed=single.seed, defer=defer_png))
    return Rendered(rendered, maps, notes=tuple(notes))


def _render_compare(
    engine: Engine, spec: GenerationSpec, job_id: int | None, on_progress: ProgressFn, should_stop: Callable[[], bool]
) -> Rendered:
    """/compare: each cell drawn as its job would be alone (by `render_job`, or with the cells
    whose batch keys agree in one call, as the worker batches jobs), in cell order, then the
    labelled grid of them (generation.jobs.compare)."""
    plot = spec.compare
    assert plot is not None
    planned = sum(compare.cell_steps(cell) for cell in plot.cells)
    drawn: dict[int, RenderedImage] = {}
    done = 0
    for group in compare.groups(plot):
        share = sum(compare.cell_steps(plot.cells[index]) for index in group)

        def progress(step: int, total: int, base: int = done, share: int = share) -> None:
            on_progress(base + min(share, step * share // max(total, 1)), planned)

        members = [plot.cells[index] for index in group]
        if len(members) == 1:
            [image] = render_job(engine, members[0], job_id=job_id, on_progress=progress, should_stop=should_stop).images
            drawn[group[0]] = dataclasses.replace(image, index=group[0])
        else:
            pictures = engine.diffuse_batch(members, Tracker(progress, should_stop))
            for index, cell, [picture] in zip(group, members, pictures, strict=True):
                drawn[index] = dataclasses.replace(encode(cell, 0, picture, job_id), index=index)
        done += share
    images = [drawn[index] for index in range(len(plot.cells))]
    pictures = [Image.open(io.BytesIO(image.png)) for image in images]
    labelled = compare.grid(plot, pictures)
    return Rendered(images, [], grid=png(labelled, compare.grid_text(plot, job_id)))


def _draw_compare(engine: Engine, spec: GenerationSpec, tracker: Tracker) -> list[Image.Image]:
    """/compare as a picture kind: its cells' pictures (`render_job` also makes their grid)."""
    rendered = _render_compare(engine, spec, None, tracker.on_progress, tracker.should_stop)
    return [Image.open(io.BytesIO(image.png)) for image in rendered.images]


PICTURE_KINDS["compare"] = _draw_compare


def _detailed(
    engine: Engine, spec: GenerationSpec, images: list[Image.Image], tracker: Tracker, notes: list[str], *, first: int = 0, of: int = 0
) -> list[Image.Image]:
    """A drawing job's pictures after ADetailer's pass, when it asks for one (`spec.detail`), and a
    note for each picture where nothing was found (`first`: the number of the first of `images`
    among the job's `of`)."""
    if spec.detail is None or spec.kind == "detail":
        return images
    images, counts = detail.refine(engine, spec, images, tracker, spec.seeds())
    many = max(of, len(images)) > 1
    for index, count in enumerate(counts):
        if count == 0:
            notes.append(detail.nothing_found(spec.detail, first + index if many else None) + " It is as drawn.")
    return images


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
    when one is configured (SDBOT_SAFETY_CLASSIFIER); as it is otherwise. A picture still held
    unencoded is scored as it is, not read back from its PNG."""
    if not rendered.images or not engine.tools.safety_classifier:
        return rendered
    pictures = [image.picture or Image.open(io.BytesIO(image.png)) for image in rendered.images]
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
    defer: bool = False,
) -> RenderedImage:
    """The PNG of image `index`. `template`: the job as written, when this image's prompt is
    its wildcard picks (`spec`), so the parameters keep both. `defer`: the picture is kept and
    its PNG left to `encoded`."""
    seed = index_seed if index_seed is not None else spec.seed + index
    parameters = infotext(spec, seed, job_id=job_id, size=image.size, template=template)
    if defer:
        return RenderedImage(index, seed, b"", image.width, image.height, parameters, picture=image)
    return RenderedImage(index, seed, png(image, parameters), image.width, image.height, parameters)


def encoded(rendered: Rendered) -> Rendered:
    """`rendered` with every picture still held (`defer_png`) made into its PNG; as it is when
    none is. Thread-safe: it touches only `rendered`'s own pictures."""
    if all(image.picture is None for image in rendered.images):
        return rendered
    images = [
        image if image.picture is None else dataclasses.replace(image, png=png(image.picture, image.parameters), picture=None)
        for image in rendered.images
    ]
    return dataclasses.replace(rendered, images=images)
