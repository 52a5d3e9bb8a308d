"""/deforum: a clip along keyframes, each frame drawn from the last one moved by the camera.

    /deforum "0: a forest, 24: a city" --frames 48 --zoom "0:(1.02)" --angle "0:(0.5*sin(t/8))"

Every schedule is parsed and bounded here, before anything is queued: an error names the flag
and the character."""

from __future__ import annotations

from commands.clips.clip_options import (
    CLIP_DRAWING,
    FPS,
    LOOP,
    clip_job,
    clip_size,
    drawing_options,
    frames_option,
    parse_clip_flags,
    raise_problems,
    steps_problems,
    unquote,
)
from commands.frame.context import Context
from commands.frame.declare import Option, read_value
from commands.frame.numbers import quoted, read_float
from commands.frame.parser import flag_name
from commands.frame.types import Reply, Request
from commands.jobs.sources import find_source
from commands.jobs.submit import submit
from generation.animation.keyframes import ScheduleError, parse_prompt_schedule, schedule_values
from generation.spec import ClipSpec, GenerationSpec

# Bounds of Deforum's per-frame motion: beyond them a clip only tears apart.
ZOOM_RANGE = (0.5, 2.0)
MAX_ANGLE = 45.0  # degrees per frame

PROMPTS = Option("prompts", "text", "A prompt, or prompts by frame: 0: a forest, 24: a city", positional=True, rest=True, required=True)
IMAGE = Option("image", "file", "A picture to start from")
FRAMES = frames_option(2, lambda s: s.max_deforum_frames, lambda s: min(s.default_frames, s.max_deforum_frames))
ZOOM = Option(
    "zoom", "text", f"Zoom per frame, keyframes, e.g. 0:(1.02) ({ZOOM_RANGE[0]:g}–{ZOOM_RANGE[1]:g})", default="1.0", example='"0:(1.02)"'
)
ANGLE = Option("angle", "text", f"Degrees per frame, keyframes, e.g. 0:(0.5) (±{MAX_ANGLE:g})", default="0", example='"0:(0.5)"')
TX = Option("tx", "text", "Pixels right per frame, keyframes", aliases=("translation-x",), default="0", example='"0:(2)"')
TY = Option("ty", "text", "Pixels down per frame, keyframes", aliases=("translation-y",), default="0", example='"0:(2)"')
STRENGTH = Option(
    "strength",
    "text",
    "How much of each frame is kept from the last, keyframes",
    default=lambda s: s.deforum_strength,
    example='"0:(0.65)"',
)
COLOR = Option("color", "switch", "Colours kept to the first frame's", aliases=("colour", "color-coherence"), default=True)
OPTIONS: tuple[Option, ...] = (
    PROMPTS,
    IMAGE,
    FRAMES,
    FPS,
    LOOP,
    ZOOM,
    ANGLE,
    TX,
    TY,
    STRENGTH,
    COLOR,
    *(option for option in CLIP_DRAWING if option.name != "style"),  # the prompt is a schedule
)


async def deforum(ctx: Context, request: Request, args: str) -> list[Reply]:
    flags, values, clip_values = parse_clip_flags(request, args, OPTIONS, keep_strength=True)
    problems: list[str] = []
    s = ctx.settings
    frames = read_value(FRAMES, clip_values, s, problems, flags.written)
    fps = read_value(FPS, clip_values, s, problems, flags.written)
    loop = read_value(LOOP, clip_values, s, problems, flags.written)
    color = read_value(COLOR, clip_values, s, problems, flags.written)
    schedules = {
        key: _keyframes(clip_values.get(key, default)) for key, default in (("zoom", "1.0"), ("angle", "0"), ("tx", "0"), ("ty", "0"))
    }
    strength_text = _keyframes(clip_values["strength"]) if "strength" in clip_values else None
    prompt = unquote(flags.text)
    if not prompt:
        problems.append('Say what to draw, e.g. `/deforum "0: a forest, 24: a city" --zoom "0:(1.02)"`.')
    else:
        _prompt_schedule(prompt, frames, problems)
    motion = {key: _schedule(text, key, frames, problems) for key, text in schedules.items()}
    strengths = _schedule(strength_text, "strength", frames, problems) if strength_text else [s.deforum_strength] * frames
    _bounded(motion["zoom"], "--zoom", *ZOOM_RANGE, problems)
    _bounded(motion["angle"], "--angle", -MAX_ANGLE, MAX_ANGLE, problems)
    _bounded(strengths, "--strength", 0.01, 1.0, problems)
    opts = drawing_options(ctx, flags, values, problems)
    picture = await find_source(ctx, request)  # a picture to start from, when the request has one

    def shape(spec: GenerationSpec, notes: list[str]) -> GenerationSpec:
        size = clip_size(ctx, spec, opts, notes, init=picture.init)
        late: list[str] = []
        for key, side in (("tx", size[0]), ("ty", size[1])):  # a shift past the frame's side leaves nothing of it
            _bounded(motion[key], flag_name(key), -side, side, late)
        raise_problems(late + steps_problems(spec.steps, strengths or []))
        strength_schedule = strength_text if strength_text and len(set(strengths or [])) > 1 else None
        clip = ClipSpec(frames=frames, fps=fps, loop=loop, color_coherence=color, strength_schedule=strength_schedule, **schedules)
        init = picture.init.blob_key if picture.init is not None else None
        return clip_job(spec, "deforum", clip, size, strength=(strengths or [s.deforum_strength])[0], init_image=init, operation="Deforum")

    extra = ((picture.init, picture.upload_size),) if picture.init is not None and picture.upload_size is not None else ()
    return await submit(ctx, request, opts, shape=shape, extra_blobs=extra)


def _keyframes(text: str) -> str:
    """A plain number is a schedule that holds it: `1.02` → `0:(1.02)`."""
    return f"0:({text.strip()})" if _plain_number(text) else text


def _schedule(text: str | None, key: str, frames: int, problems: list[str]) -> list[float] | None:
    if text is None:
        return None
    if not text.strip():
        problems.append(f'`{flag_name(key)}` needs a value, e.g. `{flag_name(key)} "0:(1.0), 24:(1.05)"`.')
        return None
    try:
        return schedule_values(text, frames)
    except ScheduleError as error:
        problems.append(f"`{flag_name(key)} {quoted(text)}`: {error}. Write keyframes like `0:(1.0), 24:(1.05)`.")
        return None


def _plain_number(text: str) -> bool:
    return read_float(text) is not None


def _prompt_schedule(text: str, frames: int, problems: list[str]) -> None:
    try:
        schedule = parse_prompt_schedule(text)
    except ScheduleError as error:
        problems.append(f"The prompt schedule: {error}. Write it like `0: a forest, 24: a city`.")
        return
    late = [frame for frame, _ in schedule if frame >= frames]
    if late:
        problems.append(
            f"The prompt for frame {late[0]} comes after the clip's last frame ({frames - 1}); use more `--frames` "
            "or an earlier frame number."
        )


def _bounded(values: list[float] | None, flag: str, low: float, high: float, problems: list[str]) -> None:
    if values is None:
        return
    for frame, value in enumerate(values):
        if not low <= value <= high:
            problems.append(f"`{flag}` is {value:g} at frame {frame}; per frame it must lie from {low:g} to {high:g}.")
            return
