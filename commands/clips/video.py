"""/video: a clip from a video model of the registry (Wan, LTX-Video), Midjourney-style.

    /video a fox running through snow --seconds 3 --motion high
    /video the fox turns its head                 (a reply to a picture: image-to-video)
    /video --end b7 the day turns to night        (a reply to a picture: first and last frame)
    /video the fox jumps --extend                 (a reply to a clip: it goes on from its last frame)

The buttons lead here too: Animate under a still picture (image-to-video of it with its prompt),
and Extend and Loop under a clip (`commands.clips.results`).

Which model: `--model` (a video model), else the person's own /settings model when it is a video
model that can draw what was asked, else the registry's first video model that can (text-to-video,
image-to-video, or first and last frame: `VideoSupport.modes`). Everything is checked here before
anything is queued, with the family's own words (`VideoSupport.check`): the frames (a count off the
family's frame rule is moved to the nearest one it takes, with a note; one out of bounds is
refused), the size, a first or last frame the model can't take. A clip is held whole in memory, so
one may have at most SDBOT_MAX_CLIP_PIXELS × SDBOT_MAX_CLIP_FRAMES pixels over all its frames (a
clip of the longest length at the largest frame), and SDBOT_MAX_CLIP_FRAMES frames in all, also
when Extend grows it. Its GPU time is estimated from the model's last clips and refused over
SDBOT_MAX_CLIP_GPU_SECONDS (`seconds_per_unit`); the engine stops a clip that runs past it anyway.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from commands.clips.clip_options import FPS, clip_job, unquote
from commands.frame.context import Context
from commands.frame.declare import Option, read_flags, read_value
from commands.frame.errors import UserError
from commands.frame.types import Reply, Request
from commands.jobs.admission import asker
from commands.jobs.job_view import image_base, spec_of
from commands.jobs.model_fit import video_models, video_support, video_variant
from commands.jobs.options import ImagineOptions, InitImage, drawing_options, fit_size, read_options
from commands.jobs.sources import Source, find_pictures, find_source, picture_in_message, replied_clip
from commands.jobs.submit import queue_spec, submit
from config import ModelEntry, ModelRegistry, Settings
from generation.animation.keyframes import ScheduleError, parse_prompt_schedule
from generation.models.families import family
from generation.prompts.lora_tags import strip_lora_tags
from generation.prompts.weights import parse_prompt_attention
from generation.spec import ClipSpec, GenerationSpec
from storage import usage
from storage.tables import Job

# What a video model may be asked to do (`VideoSupport.modes`), in words for replies.
MODE_WORDS = {"t2v": "text-to-video", "i2v": "image-to-video", "flf2v": "first-and-last-frame"}
# Buttons take no text: Animate's reply says how to give your own motion prompt (Discord's slash
# commands can't reply to a message: a mention in a reply, or Apps → Remix, can).
MANUAL_HINT = "For your own motion, reply to the picture with `/video <what moves>` (options: `/help video`)."
MANUAL_HINT_DISCORD = (
    "For your own motion, use Apps → Remix on the picture with `/video <what moves>`, or reply to it mentioning me "
    "(options: `/help video`)."
)

PROMPT = Option("prompt", "text", "What moves and how (and --options)", positional=True, rest=True, required=True)
IMAGE = Option("image", "file", "The first frame (image-to-video); or reply to a picture")
IMAGE2 = Option("image2", "file", "With --end alone: the last frame")
FRAMES = Option(
    "frames",
    "int",
    "Frames in the clip (moved to the model's frame rule)",
    bounds=lambda s: (1, s.max_clip_frames),
    default="the model's",
    example="33",
)
SECONDS = Option(
    "seconds",
    "float",
    "Length in seconds instead of --frames (frames = seconds × fps)",
    aliases=("duration",),
    bounds=lambda s: (0.1, float(s.max_clip_frames)),
    example="3",
)
VIDEO_FPS = dataclasses.replace(FPS, default="the model's")
MOTION = Option("motion", "choice", "How much moves: low (subtle) or high (a lot)", choices=("low", "high"), example="high")
LOOP = Option(
    "loop",
    "switch",
    "Ends where it starts: on its first frame where the model draws to a last frame, else played forward then back",
    default=False,
)
END = Option(
    "end",
    "text",
    "The last frame: the id of a message with my picture; alone, the second picture (attached)",
    example="b3",
    applies="with a first frame, on a model that draws first and last frame",
)
EXTEND = Option(
    "extend", "switch", "As a reply to my clip: continue it from its last frame (the prompt says what happens next)", default=False
)
# The drawing options a video model takes, said for video models: sizes in the family's multiples,
# its own steps and guidance by default.
_VIDEO_WORDS: dict[str, dict[str, Any]] = {
    "model": {"help": "A video model (Wan, LTX-Video; see /models)", "default": "the first that can draw it"},
    "size": {
        "help": "Width x height of a frame, in the multiples the model takes",
        "applies": lambda s: f"at most {pixel_limit(s):,} pixels over all the clip's frames",
    },
    "seed": {"help": "Seed; -1 is random"},
    "steps": {"default": "the model's"},
    "cfg": {"default": "the model's", "applies": ""},
    "no": {"applies": "where the model takes one"},
}
DRAWING = tuple(
    dataclasses.replace(option, **_VIDEO_WORDS.get(option.name, {}))
    for option in drawing_options("no", "seed", "steps", "cfg", "model", "size", "ar", "lora")
)
OPTIONS: tuple[Option, ...] = (PROMPT, IMAGE, IMAGE2, FRAMES, SECONDS, VIDEO_FPS, MOTION, LOOP, END, EXTEND, *DRAWING)
VIDEO_KEYS = ("frames", "seconds", "fps", "motion", "loop", "end", "extend")
Uploads = tuple[tuple[InitImage, int], ...]  # pictures uploaded with a request, and their PNG sizes


@dataclass(frozen=True)
class Ask:
    """One clip as asked for, by /video or a button: its first and last frame, its length, and the
    clip it continues (Extend)."""

    start: InitImage | None = None
    end: InitImage | None = None
    frames: int | None = None  # with `extend`: the new frames
    seconds: float | None = None
    fps: int | None = None
    loop: bool = False
    motion: str | None = None
    extend: Job | None = None  # the clip this one continues from its last frame
    operation: str | None = None  # "Animate", "Extend": what the caption calls it
    uploads: Uploads = ()  # pictures uploaded with the request, to record with the job


# --- the video models ---------------------------------------------------------------------------------


def modes_of(entry: ModelEntry) -> set[str]:
    """What the video model draws (`VideoSupport.modes`); empty for a picture model."""
    support = video_support(entry)
    return set(support.modes(video_variant(entry))) if support is not None else set()


def does(entry: ModelEntry, mode: str) -> bool:
    """Whether the model draws `mode` (t2v, i2v, flf2v), as its family's `check` decides."""
    return mode in modes_of(entry)


def wanted_mode(start: bool, end: bool) -> str:
    return "flf2v" if end else "i2v" if start else "t2v"


def animate_model(registry: ModelRegistry) -> ModelEntry | None:
    """The model the Animate button draws with: the registry's first video model doing
    image-to-video (None: no such model, and no Animate button)."""
    return next((entry for entry in video_models(registry) if does(entry, "i2v")), None)


def _listing(registry: ModelRegistry) -> str:
    entries = video_models(registry)
    if not entries:
        return "No video model is configured here: an admin adds a Wan or LTX-Video model to SDBOT_MODELS."
    each = [f"`{e.display_name}` ({', '.join(MODE_WORDS[m] for m in MODE_WORDS if does(e, m))})" for e in entries]
    return "Video models here: " + ", ".join(each) + "."


def _not_video(entry: ModelEntry, registry: ModelRegistry) -> UserError:
    return UserError(
        f"`{entry.display_name}` ({entry.family_label}) is a picture model: `/video` draws with a video model. {_listing(registry)}"
    )


async def choose_model(ctx: Context, request: Request, opts: ImagineOptions, mode: str) -> ModelEntry:
    """`--model` (a video model), else the person's /settings model when it is a video model
    that draws `mode`, else the registry's first that does."""
    registry = ctx.registry
    if opts.model is not None:
        entry = registry.get(opts.model)
        assert entry is not None  # read_options checked the name
        if video_support(entry) is None:
            raise _not_video(entry, registry)
        return entry  # what it can't draw, its family's check says (with the family's words)
    async with ctx.db.transaction() as session:
        own = registry.get((await asker(session, request)).settings.get("model") or "")
    if own is not None and does(own, mode):
        return own
    for entry in video_models(registry):
        if does(entry, mode):
            return entry
    raise UserError(f"No video model here draws {MODE_WORDS[mode]}. {_listing(registry)}")


def model_defaults(entry: ModelEntry) -> tuple[int, int]:
    """The model's own frames and fps (`VideoSupport.defaults`; a built-in tiny model's are short)."""
    support = video_support(entry)
    assert support is not None
    found = support.defaults(video_variant(entry), tiny=entry.kind == "tiny")
    return found.frames, found.fps


def fit_frames(entry: ModelEntry, drawn: int, size: tuple[int, int], start: bool, end: bool, *, most: int) -> tuple[int, list[str]]:
    """`drawn` (the frames one pipeline call draws) moved to the family's frame rule when it is
    off it by less than a step (at most `most`), and what the family's check says of the result:
    a count farther off, out of its bounds, a size or a first or last frame it can't take."""
    support = video_support(entry)
    assert support is not None
    variant = video_variant(entry)
    if not support.fits(drawn):
        near = support.nearest_frames(drawn, variant)
        if near > most:
            near -= support.frame_step
        if abs(near - drawn) < support.frame_step and support.fits(near):
            drawn = near
    return drawn, list(support.check(variant, drawn, size[0], size[1], start, end))


def pixel_limit(settings: Settings) -> int:
    """The most pixels one clip may have over all its frames: the longest clip
    (SDBOT_MAX_CLIP_FRAMES) at the largest frame (SDBOT_MAX_CLIP_PIXELS)."""
    return settings.max_clip_pixels * settings.max_clip_frames


def work_units(frames: int, size: tuple[int, int], steps: int) -> int:
    """What a clip's GPU time grows with, to a first order: frames x pixels x steps (attention grows
    faster with the tokens, so a much longer or larger clip than the recent ones is underestimated)."""
    return frames * size[0] * size[1] * steps


async def seconds_per_unit(ctx: Context, entry: ModelEntry) -> float | None:
    """GPU-seconds per `work_units` on this model, from its last clips (None: none ran yet; the
    engine's stop at SDBOT_MAX_CLIP_GPU_SECONDS is then the only limit)."""
    async with ctx.db.transaction() as session:
        runs = await usage.recent_runs(session, "video", entry.display_name)
    units, seconds = 0, 0.0
    for params, ran in runs:
        clip = params.get("clip") or {}
        units += work_units(
            int(clip.get("frames", 0)), (int(params.get("width", 0)), int(params.get("height", 0))), int(params.get("steps", 0))
        )
        seconds += ran
    return seconds / units if units else None


def plain_prompt(text: str) -> str:
    """A picture's prompt as a video model's text encoder reads it: LoRA tags, weights and BREAK
    out (Animate starts from a picture drawn with A1111's syntax)."""
    fragments = parse_prompt_attention(strip_lora_tags(text))
    return " ".join("".join(piece for piece, weight in fragments if weight != -1.0).split())


# --- /video ---------------------------------------------------------------------------------------


async def video_command(ctx: Context, request: Request, args: str) -> list[Reply]:
    flags = read_flags(request.options, args, OPTIONS)
    values = {key: unquote(value) if isinstance(value, str) else value for key, value in flags.values.items()}
    own = {key: values.pop(key) for key in VIDEO_KEYS if key in values}
    s = ctx.settings
    problems: list[str] = []
    frames = read_value(FRAMES, own, s, problems, flags.written) if "frames" in own else None
    seconds = read_value(SECONDS, own, s, problems, flags.written) if "seconds" in own else None
    fps = read_value(VIDEO_FPS, own, s, problems, flags.written) if "fps" in own else None
    motion = read_value(MOTION, own, s, problems, flags.written)
    loop = read_value(LOOP, own, s, problems, flags.written)
    extend = read_value(EXTEND, own, s, problems, flags.written)
    end = str(own["end"]).strip() if own.get("end") is not None else None
    if frames is not None and seconds is not None:
        problems.append("Use `--frames` or `--seconds`, not both: they say the same thing two ways.")
    if loop and end is not None:
        problems.append("Use `--loop` or `--end`, not both: `--loop` already ends the clip on its first frame.")
    opts = read_options(values, s, ctx.registry, written=flags.written, prompt=unquote(flags.text), problems=[*flags.problems, *problems])
    ask = Ask(frames=frames, seconds=seconds, fps=fps, loop=bool(loop), motion=motion)
    if extend:
        clip = await replied_clip(ctx, request)
        if clip is None:
            raise UserError("`--extend` continues one of my clips: reply to it with `/video <what happens next> --extend`.")
        end_picture, uploads = await _end_of_extension(ctx, request, end)
        ask = dataclasses.replace(ask, end=end_picture, extend=clip, uploads=uploads, operation="Extend")
        return await queue_video(ctx, request, opts, ask)
    if request.reply_to and not request.attachments and await replied_clip(ctx, request) is not None:
        raise UserError(
            "That is one of my clips: add `--extend` to continue it from its last frame (`/video <what happens next> --extend`), "
            "or reply to a picture to animate it."
        )
    source, end_picture, uploads = await _start_and_end(ctx, request, end)
    if not opts.prompt and source.base is not None:  # `/video` alone as a reply to my picture: its own prompt, as Animate
        opts = dataclasses.replace(opts, prompt=plain_prompt(source.base.prompt))
    if not opts.prompt:
        example = "`/video the fox turns its head`" if source.init is not None else "`/video a fox running through snow --seconds 3`"
        raise UserError(f"Say what moves, e.g. {example}.")
    if source.init is not None and source.upload_size is not None:
        uploads = ((source.init, source.upload_size), *uploads)
    operation = "Animate" if source.init is not None else None
    ask = dataclasses.replace(ask, start=source.init, end=end_picture, uploads=uploads, operation=operation)
    return await queue_video(ctx, request, opts, ask, parent=source.parent)


async def _start_and_end(ctx: Context, request: Request, end: str | None) -> tuple[Source, InitImage | None, Uploads]:
    """The first frame (where it comes from: `commands.jobs.sources.find_source`), the last frame
    (`--end`), and the last frame's upload to record."""
    if end is None:
        if len(request.attachments) > 1:
            raise UserError(f"You sent {len(request.attachments)} pictures: add `--end` to end the clip on the second, or send one.")
        return await find_source(ctx, request), None, ()
    if not end:  # `--end` alone: the picture replied to and the attached ones, in that order
        found = await find_pictures(ctx, request, (), most=2, what="A clip with `--end`")
        if len(found) < 2:
            raise UserError(
                "`--end` sets the clip's last frame, and needs a first frame too. Reply to a picture with `--end` and the last "
                "frame attached, attach both (first, then last), or give the id of a message with my picture (`--end b3`)."
            )
        (start, start_size), (last, last_size) = found
        return Source(start, start_size), last, ((last, last_size),) if last_size is not None else ()
    last = (await picture_in_message(ctx, request, end, "--end")).init
    source = await find_source(ctx, request)
    if source.init is None:
        raise UserError(
            "`--end` sets the clip's last frame, and needs a first frame too: reply to a picture with the command, or attach one."
        )
    return source, last, ()


async def _end_of_extension(ctx: Context, request: Request, end: str | None) -> tuple[InitImage | None, Uploads]:
    """The last frame of a clip's continuation: `--end b3`, or `--end` alone with a picture attached."""
    if end is None:
        return None, ()
    if end:
        return (await picture_in_message(ctx, request, end, "--end")).init, ()
    found = await find_pictures(ctx, dataclasses.replace(request, reply_to=None), (), most=1, what="`--end` with `--extend`")
    if not found:
        raise UserError("`--end` alone takes the picture attached as the last frame: attach one, or give a message id (`--end b3`).")
    last, size = found[0]
    return last, ((last, size),) if size is not None else ()


# --- queueing a clip (the command and the buttons) --------------------------------------------------------


async def queue_video(
    ctx: Context,
    request: Request,
    opts: ImagineOptions,
    ask: Ask,
    *,
    base: GenerationSpec | None = None,
    parent: tuple[int, int | None] | None = None,
    notes: Sequence[str] = (),
) -> list[Reply]:
    """Queue the clip `ask` describes: the model chosen, every bound checked, nothing queued
    when one fails."""
    notes = list(notes)
    picked = opts.model is not None
    so_far: tuple[str, ...] = ()
    start = ask.start
    if ask.extend is not None:
        clip_job_spec = spec_of(ask.extend)
        so_far = tuple(output.blob_key for output in ask.extend.outputs)
        last = ask.extend.outputs[-1]
        start = InitImage(last.blob_key, last.width, last.height)
        parent = (ask.extend.id, None)
        if clip_job_spec.kind == "video":  # its settings go on; an AnimateDiff or Deforum clip's are another model's
            base = base or clip_job_spec
        if not opts.prompt:
            opts = dataclasses.replace(opts, prompt=continued_prompt(clip_job_spec))
        if ask.fps is None and clip_job_spec.clip is not None:  # the whole clip plays at one rate: its own
            ask = dataclasses.replace(ask, fps=clip_job_spec.clip.fps)
        if opts.model is None:  # the clip's own model, where it can start from a frame
            own = ctx.registry.get(clip_job_spec.model)
            if own is not None and does(own, wanted_mode(True, ask.end is not None)):
                opts = dataclasses.replace(opts, model=own.display_name)
    entry = await choose_model(ctx, request, opts, wanted_mode(start is not None, ask.end is not None))
    if ask.extend is not None and not picked and (was := spec_of(ask.extend).model) != entry.display_name:
        notes.append(f"Continued with `{entry.display_name}`, which can start from a frame (`{was}` can't).")
    opts = dataclasses.replace(opts, model=entry.display_name)
    s = ctx.settings
    rate = await seconds_per_unit(ctx, entry) if s.max_clip_gpu_seconds else None

    def shape(spec: GenerationSpec, notes: list[str]) -> GenerationSpec:
        support = video_support(entry)
        label = support.label(video_variant(entry))
        default_frames, default_fps = model_defaults(entry)
        fps = ask.fps or min(default_fps, s.max_fps)
        shared = 1 if so_far else 0  # Extend draws from the clip's last frame: the call's first frame is it
        room = s.max_clip_frames - len(so_far)
        if so_far and room + shared < support.shortest:
            raise UserError(
                f"This clip has {len(so_far)} frames; a clip may have {s.max_clip_frames} here, and {label} goes on by "
                f"{support.shortest - shared} frames at least."
            )
        frames = ask.frames or (max(1, round(ask.seconds * fps)) if ask.seconds else default_frames - shared)
        if frames > room and (ask.frames or ask.seconds):
            raise UserError(
                f"This clip has {len(so_far)} frames and may grow by {room} more (a clip has at most {s.max_clip_frames} "
                f"here); you asked for {frames}."
                if so_far
                else f"{frames} frames is over the limit of {s.max_clip_frames} frames a clip. Ask for fewer."
            )
        frames = min(frames, room)
        size = _size(ctx, entry, spec, opts, start, so_far, len(so_far) + frames, notes)
        end = ask.end.blob_key if ask.end is not None else None
        ping_pong = ask.loop and not (start is not None and not so_far and does(entry, "flf2v"))
        if ask.loop and not ping_pong:
            assert start is not None
            end = start.blob_key
            notes.append("It ends on its first frame, so it loops.")
        elif ping_pong:
            why = (
                "a continued clip"
                if so_far
                else f"{label} draws no last frame here"
                if start is not None
                else "there is no first frame to end on"
            )
            notes.append(f"It loops by playing forward, then back ({why}).")
        drawn, problems = fit_frames(entry, frames + shared, size, start is not None, end is not None, most=room + shared)
        if problems:
            raise UserError(*problems)
        if drawn - shared != frames:
            became = f"{drawn - shared} new frames ({drawn} drawn from the clip's last one)" if so_far else f"{drawn}"
            notes.append(f"{label} draws {support.frame_rule}: {frames} {'new ' if so_far else ''}frames became {became}.")
        frames = drawn - shared  # the new frames (Extend: the call's first frame is the clip's last one)
        total = (len(so_far) + frames) * size[0] * size[1]
        if total > pixel_limit(s):
            raise UserError(
                f"{len(so_far) + frames} frames of {size[0]}x{size[1]} are {total:,} pixels; a clip may have {pixel_limit(s):,} "
                f"here ({s.max_clip_frames} frames of {s.max_clip_pixels:,} pixels). Ask for fewer frames or a smaller size."
            )
        if ask.seconds:
            notes.append(f"{ask.seconds:g} s at {fps} fps: {frames} frames.")
        limit = s.max_clip_gpu_seconds
        if limit and rate is not None and (estimate := rate * work_units(drawn, size, spec.steps)) > limit:
            raise UserError(
                f"This clip would take about {estimate:,.0f} GPU-seconds (judging by the last clips of `{entry.display_name}`); "
                f"a clip may take {limit:,g} here. Ask for fewer frames or steps, or a smaller size."
            )
        clip = ClipSpec(
            frames=drawn,  # what one call draws (generation.jobs.video: Extend adds all but its first)
            fps=fps,
            loop=ping_pong,
            end_image=end,
            motion_amount=ask.motion,  # type: ignore[arg-type]
            source=so_far,
            extend=bool(so_far),
            max_seconds=limit,
        )
        init = start.blob_key if start is not None else None
        return clip_job(spec, "video", clip, size, init_image=init, operation=ask.operation)

    return await submit(ctx, request, opts, base=base, parent=parent, shape=shape, extra_blobs=ask.uploads, notes=notes)


def _size(
    ctx: Context,
    entry: ModelEntry,
    spec: GenerationSpec,
    opts: ImagineOptions,
    start: InitImage | None,
    so_far: tuple[str, ...],
    frames: int,
    notes: list[str],
) -> tuple[int, int]:
    """A frame's size: a continued clip's own; `--size` as given; else the first frame's
    proportions (or `--ar`'s, or the model's) at the model's area, made smaller to fit the clip's
    pixel limit, with a note."""
    s = ctx.settings
    if so_far:
        assert start is not None
        return start.width, start.height
    if opts.size is not None:
        return opts.size
    multiple = family(entry.family).size_multiple
    width, height = spec.width, spec.height
    if start is not None and opts.ar is None:
        native = entry.native_size
        width, height = fit_size(start.width, start.height, native * native, s, multiple)
    limit = pixel_limit(s) // max(frames, 1)
    if width * height > limit:
        fitted = fit_size(width, height, limit, s, multiple)
        if fitted[0] * fitted[1] < width * height:
            notes.append(f"Frames are drawn at {fitted[0]}x{fitted[1]}, within the limit of {pixel_limit(s):,} pixels a clip.")
            width, height = fitted
    return width, height


# --- the buttons ------------------------------------------------------------------------------------------


async def animate_picture(ctx: Context, request: Request, job: Job, index: int) -> list[Reply]:
    """Animate under a still picture: image-to-video of it, with its prompt, on the first video
    model that does image-to-video."""
    entry = animate_model(ctx.registry)
    if entry is None:
        raise UserError(f"No video model here does image-to-video. {_listing(ctx.registry)}")
    output = job.outputs[index]
    prompt = plain_prompt(image_base(job, index).prompt) or "gentle motion"
    opts = ImagineOptions(prompt=prompt, model=entry.display_name)
    ask = Ask(start=InitImage(output.blob_key, output.width, output.height), operation="Animate")
    hint = MANUAL_HINT_DISCORD if request.platform == "discord" else MANUAL_HINT
    return await queue_video(ctx, request, opts, ask, parent=(job.id, index), notes=(hint,))


def continued_prompt(spec: GenerationSpec) -> str:
    """The prompt a clip goes on with: its own (a Deforum clip's last one; a picture model's
    without A1111's syntax)."""
    if spec.kind == "video":
        return spec.prompt
    prompt = spec.prompt
    if spec.kind == "deforum":
        try:
            prompt = parse_prompt_schedule(prompt)[-1][1]
        except ScheduleError:
            pass
    return plain_prompt(prompt)


async def extend_clip(ctx: Context, request: Request, job: Job) -> list[Reply]:
    """Extend under a clip: it goes on from its last frame with its own prompt, by the model's own
    length (within SDBOT_MAX_CLIP_FRAMES in all)."""
    spec = spec_of(job)
    assert spec.clip is not None
    opts = ImagineOptions()
    ask = Ask(fps=spec.clip.fps, loop=spec.clip.loop, motion=spec.clip.motion_amount, extend=job, operation="Extend")
    return await queue_video(ctx, request, opts, ask, notes=("Reply `/video <what happens next> --extend` to the clip to steer it.",))


async def loop_clip(ctx: Context, request: Request, job: Job) -> list[Reply]:
    """Loop under a clip: the same clip again, made to loop: ending on its first frame where the
    model draws to a last frame, else played forward then back."""
    spec = spec_of(job)
    clip = spec.clip
    assert clip is not None
    entry = ctx.registry.get(spec.model)
    if clip.loop or (clip.end_image is not None and clip.end_image == spec.init_image):
        raise UserError(f"Job {job.id} loops already.")
    if entry is not None and spec.init_image is not None and not clip.extend and clip.end_image is None and does(entry, "flf2v"):
        looped, note = clip.evolve(end_image=spec.init_image), "It ends on its first frame, so it loops."
    else:
        looped, note = clip.evolve(loop=True), "It loops by playing forward, then back."
    return await queue_spec(ctx, request, spec.evolve(clip=looped, operation=spec.operation), parent=(job.id, None), notes=(note,))


def video_actions_shown(registry: ModelRegistry) -> bool:
    """Whether still pictures show the Animate button: the registry has a video model that does
    image-to-video."""
    return animate_model(registry) is not None
