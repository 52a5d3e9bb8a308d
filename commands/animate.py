"""/animate, /video2video and /deforum: clips from a prompt, from a clip, and along keyframes.

    /animate a fox running --frames 16 --fps 8 --motion v3 --camera zoom-in:0.8 --loop
    /video2video a watercolor fox --strength 0.6        as a reply to a video, a GIF or a clip
    /deforum "0: a forest, 24: a city" --frames 48 --zoom "0:(1.02)" --angle "0:(0.5*sin(t/8))"

Each takes the usual drawing options of /imagine (negative prompt, seed, steps, CFG, sampler,
model, size, clip skip, VAE, LoRAs; styles except on /deforum, whose prompt is a schedule).
Everything is checked here before anything is queued: frames and fps within their limits, the
frame size within SDBOT_MAX_CLIP_PIXELS (derived sizes are fitted, and the reply says so), a
motion adapter made for the model's architecture, camera LoRAs by name, every Deforum schedule
parsed and bounded (an error names the flag and the character), the prompt schedule too.
"""

from __future__ import annotations

import math
from typing import Any

from commands.clip_source import ClipSource, find_clip, fit_frame, replied_clip, require_clip
from commands.context import Context
from commands.errors import UserError
from commands.imagine import find_source, imagine
from commands.numbers import quoted, read_float
from commands.options import IMAGINE_FLAGS, ImagineOptions, InitImage, bounded_number, read_options
from commands.parser import Flags, flag_name, parse_flags
from commands.submit import submit
from commands.types import Reply, Request
from config.models import ARCHITECTURE_NAMES, ModelEntry
from generation.animation.keyframes import ScheduleError, parse_prompt_schedule, schedule_values
from generation.spec import CameraRef, ClipSpec, GenerationSpec

TINY_MOTION = "tiny"  # the built-in motion adapter of the tiny model
TINY_CAMERAS = ("tiny-zoom",)  # the built-in camera LoRA of the tiny model
MAX_CAMERAS = 3
DRAWING = {
    k: v
    for k, v in IMAGINE_FLAGS.items()
    if v in ("no", "seed", "steps", "cfg", "sampler", "model", "size", "ar", "clip_skip", "vae", "style", "lora")
}
CLIP_FLAGS = {"frames": "frames", "fps": "fps", "loop": "loop"}
ANIMATE_FLAGS = {**DRAWING, **CLIP_FLAGS, "motion": "motion", "camera": "camera", "cameras": "camera"}
VIDEO2VIDEO_FLAGS = {**ANIMATE_FLAGS, "strength": "strength", "denoise": "strength"}
DEFORUM_FLAGS = {
    **{k: v for k, v in DRAWING.items() if v != "style"},
    **CLIP_FLAGS,
    "zoom": "zoom",
    "angle": "angle",
    "tx": "tx",
    "translation-x": "tx",
    "ty": "ty",
    "translation-y": "ty",
    "strength": "strength",
    "color": "color",
    "colour": "color",
    "color-coherence": "color",
}
CLIP_KEYS = ("frames", "fps", "loop", "motion", "camera", "zoom", "angle", "tx", "ty", "color")
# Bounds of Deforum's per-frame motion: beyond them a clip only tears apart.
ZOOM_RANGE = (0.5, 2.0)
MAX_ANGLE = 45.0  # degrees per frame
SWITCHES = {"": True, "on": True, "yes": True, "true": True, "off": False, "no": False, "false": False}


# --- the three commands ---------------------------------------------------------------------------


async def animate(ctx: Context, request: Request, args: str) -> list[Reply]:
    flags, values, clip_values = _parse(args, ANIMATE_FLAGS)
    problems: list[str] = []
    frames = _frames(ctx, clip_values, problems, low=ctx.settings.min_frames, high=ctx.settings.max_frames)
    fps = _fps(ctx, clip_values, problems)
    loop = _switch(clip_values, "loop", "--loop", False, problems)
    if not _unquote(flags.text):
        problems.append("Say what to animate, e.g. `/animate a fox running through snow`.")
    opts = _options(ctx, flags, values, problems)

    def shape(spec: GenerationSpec, notes: list[str]) -> GenerationSpec:
        model = _model(ctx, spec)
        motion, cameras = _motion(ctx, model, clip_values)
        size = _clip_size(ctx, spec, opts, notes)
        clip = ClipSpec(frames=frames, fps=fps, motion=motion, cameras=cameras, loop=loop, **_windows(ctx, frames, notes))
        return _clip_job(spec, "animate", clip, size)

    return await submit(ctx, request, opts, shape=shape)


async def imagine_or_restyle(ctx: Context, request: Request, args: str) -> list[Reply]:
    """/imagine and plain text: a prompt, except that a reply to a clip restyles the clip
    (/video2video with the prompt), as a reply to a picture remixes the picture."""
    if request.reply_to and not request.attachments and await replied_clip(ctx, request) is not None:
        return await video2video(ctx, request, args)
    return await imagine(ctx, request, args)


async def video2video(ctx: Context, request: Request, args: str) -> list[Reply]:
    flags, values, clip_values = _parse(args, VIDEO2VIDEO_FLAGS)
    problems: list[str] = []
    fps = _fps(ctx, clip_values, problems) if "fps" in clip_values else None
    frames = _frames(ctx, clip_values, problems, low=1, high=ctx.settings.max_frames) if "frames" in clip_values else None
    loop = _switch(clip_values, "loop", "--loop", None, problems)
    opts = _options(ctx, flags, values, problems)
    source = require_clip(await find_clip(ctx, request, fps=fps, max_frames=frames or ctx.settings.max_frames), "/video2video")
    return await queue_video2video(ctx, request, source, opts, clip_values, frames=frames, fps=fps, loop=loop)


async def queue_video2video(
    ctx: Context,
    request: Request,
    source: ClipSource,
    opts: ImagineOptions,
    clip_values: dict[str, str],
    *,
    frames: int | None = None,
    fps: float | None = None,
    loop: bool | None = None,
) -> list[Reply]:
    """A video2video job on `source` (the command, a reply to a clip, and the Remix button)."""
    chosen = source.frames[: min(frames or len(source.frames), ctx.settings.max_frames)]
    if not opts.prompt and source.base is None:
        raise UserError("Say what to make of the clip, e.g. `/video2video a watercolor painting` as a reply to it.")
    base = source.base
    notes_now = list(source.notes)
    if len(chosen) < len(source.frames):
        notes_now.append(f"The clip has {len(source.frames)} frames; I restyle the first {len(chosen)}.")

    def shape(spec: GenerationSpec, notes: list[str]) -> GenerationSpec:
        model = _model(ctx, spec)
        if model.family == "sdxl":
            raise UserError(
                f"Video to video runs on SD 1.x models; `{model.display_name}` is SDXL (diffusers has no SDXL AnimateDiff "
                "video-to-video). Add `--model` with an SD 1.x model."
            )
        values = dict(clip_values)
        if base is not None and base.clip is not None and "motion" not in values and base.clip.motion:
            values.setdefault("motion", base.clip.motion)
        motion, cameras = _motion(ctx, model, values)
        size = _clip_size(ctx, spec, opts, notes, init=chosen[0])
        strength = opts.strength if opts.strength is not None else ctx.settings.video2video_strength
        _raise(_steps_problems(spec.steps, [strength]))
        prompt = spec.prompt
        if base is not None and not opts.prompt and base.kind == "deforum":  # a prompt schedule: its first prompt
            prompt = parse_prompt_schedule(base.prompt)[0][1]
        rate = round(fps or source.fps or ctx.settings.default_fps)
        clip = ClipSpec(
            frames=len(chosen),
            fps=max(1, min(rate, ctx.settings.max_fps)),
            motion=motion,
            cameras=cameras,
            loop=bool(loop if loop is not None else base is not None and base.clip is not None and base.clip.loop),
            source=tuple(frame.blob_key for frame in chosen),
            **_windows(ctx, len(chosen), notes),
        )
        return _clip_job(spec, "video2video", clip, size, strength=strength, prompt=prompt, operation="Video to video")

    return await submit(ctx, request, opts, base=base, parent=source.parent, shape=shape, extra_blobs=source.uploads, notes=notes_now)


async def deforum(ctx: Context, request: Request, args: str) -> list[Reply]:
    flags, values, clip_values = _parse(args, DEFORUM_FLAGS, keep_strength=True)
    problems: list[str] = []
    s = ctx.settings
    frames = _frames(ctx, clip_values, problems, low=2, high=s.max_deforum_frames, default=min(s.default_frames, s.max_deforum_frames))
    fps = _fps(ctx, clip_values, problems)
    loop = _switch(clip_values, "loop", "--loop", False, problems)
    color = _switch(clip_values, "color", "--color", True, problems)
    schedules = {
        key: _keyframes(clip_values.get(key, default)) for key, default in (("zoom", "1.0"), ("angle", "0"), ("tx", "0"), ("ty", "0"))
    }
    strength_text = _keyframes(clip_values["strength"]) if "strength" in clip_values else None
    prompt = _unquote(flags.text)
    if not prompt:
        problems.append('Say what to draw, e.g. `/deforum "0: a forest, 24: a city" --zoom "0:(1.02)"`.')
    else:
        _prompt_schedule(prompt, frames, problems)
    motion = {key: _schedule(text, key, frames, problems) for key, text in schedules.items()}
    strengths = _schedule(strength_text, "strength", frames, problems) if strength_text else [s.deforum_strength] * frames
    _bounded(motion["zoom"], "--zoom", *ZOOM_RANGE, problems)
    _bounded(motion["angle"], "--angle", -MAX_ANGLE, MAX_ANGLE, problems)
    _bounded(strengths, "--strength", 0.01, 1.0, problems)
    opts = _options(ctx, flags, values, problems)
    picture = await find_source(ctx, request)  # a picture to start from, when the request has one

    def shape(spec: GenerationSpec, notes: list[str]) -> GenerationSpec:
        size = _clip_size(ctx, spec, opts, notes, init=picture.init)
        late: list[str] = []
        for key, side in (("tx", size[0]), ("ty", size[1])):  # a shift past the frame's side leaves nothing of it
            _bounded(motion[key], flag_name(key), -side, side, late)
        _raise(late + _steps_problems(spec.steps, strengths or []))
        strength_schedule = strength_text if strength_text and len(set(strengths or [])) > 1 else None
        clip = ClipSpec(frames=frames, fps=fps, loop=loop, color_coherence=color, strength_schedule=strength_schedule, **schedules)
        init = picture.init.blob_key if picture.init is not None else None
        return _clip_job(spec, "deforum", clip, size, strength=(strengths or [s.deforum_strength])[0], init_image=init, operation="Deforum")

    extra = ((picture.init, picture.upload_size),) if picture.init is not None and picture.upload_size is not None else ()
    return await submit(ctx, request, opts, shape=shape, extra_blobs=extra)


# --- reading options ------------------------------------------------------------------------------


def _parse(args: str, aliases: dict[str, str], *, keep_strength: bool = False) -> tuple[Flags, dict[str, str], dict[str, str]]:
    """The flags, the drawing options' raw values, and the clip's own raw values."""
    flags = parse_flags(args, aliases)
    values = {key: _unquote(value) for key, value in flags.values.items()}
    clip_values = {key: values.pop(key) for key in (*CLIP_KEYS, *(("strength",) if keep_strength else ())) if key in values}
    return flags, values, clip_values


def _options(ctx: Context, flags: Flags, values: dict[str, str], problems: list[str]) -> ImagineOptions:
    """The drawing options checked as /imagine checks them; every problem found so far, the
    clip's included, comes in one reply."""
    return read_options(
        values, ctx.settings, ctx.registry, written=flags.written, prompt=_unquote(flags.text), problems=[*flags.problems, *problems]
    )


def _unquote(text: str) -> str:
    """`"0:(1.02)"` → `0:(1.02)`: people quote schedules and prompt schedules as Deforum's docs do."""
    text = text.strip()
    for left, right in (('"', '"'), ("'", "'"), ("“", "”")):
        if len(text) >= 2 and text.startswith(left) and text.endswith(right):
            return text[1:-1].strip()
    return text


def _frames(ctx: Context, values: dict[str, str], problems: list[str], *, low: int, high: int, default: int | None = None) -> int:
    if "frames" in values and not values["frames"].strip():
        problems.append(f"`--frames` needs a number, e.g. `--frames 16` ({low} to {high}).")
    chosen = default if default is not None else ctx.settings.default_frames
    return bounded_number(values.get("frames") or None, "--frames", int, low, high, chosen, problems)


def _fps(ctx: Context, values: dict[str, str], problems: list[str]) -> int:
    return bounded_number(values.get("fps") or None, "--fps", int, 1, ctx.settings.max_fps, ctx.settings.default_fps, problems)


def _switch(values: dict[str, str], key: str, flag: str, default: Any, problems: list[str]) -> Any:
    if key not in values:
        return default
    value = SWITCHES.get(values[key].strip().lower())
    if value is None:
        problems.append(f"`{flag}` is on or off (`{flag}` alone means on); you wrote `{values[key]}`.")
        return default
    return value


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


def _steps_problems(steps: int, strengths: list[float]) -> list[str]:
    weakest = min(strengths, default=1.0)
    if int(steps * weakest) >= 1:
        return []
    return [
        f"With strength {weakest:g} and {steps} steps no denoising step would run: use at least "
        f"{math.ceil(1 / weakest)} steps or a higher `--strength`."
    ]


def _raise(problems: list[str]) -> None:
    if problems:
        raise UserError(*dict.fromkeys(problems))


# --- the job's model, motion, size ------------------------------------------------------------------


def _model(ctx: Context, spec: GenerationSpec) -> ModelEntry:
    return ctx.registry.get(spec.model) or ctx.registry.default


def _motion(ctx: Context, model: ModelEntry, values: dict[str, str]) -> tuple[str, tuple[CameraRef, ...]]:
    """The motion adapter (by `--motion` or the first that fits the model) and camera LoRAs."""
    adapters = ctx.settings.motion_adapters
    family = model.family
    wanted = (values.get("motion") or "").strip()
    tiny = model.kind == "tiny"
    if tiny:
        if wanted and wanted.lower() != TINY_MOTION:
            raise UserError(f"On the `{model.display_name}` model only the built-in `{TINY_MOTION}` motion adapter works.")
        motion = TINY_MOTION
    elif wanted:
        names = {name.lower(): name for name in adapters}
        if wanted.lower() not in names:
            known = ", ".join(f"`{name}`" for name in adapters) or "none are configured (an admin sets SDBOT_MOTION_ADAPTERS)"
            raise UserError(f"I don't know the motion adapter `{wanted}`. Motion adapters: {known}.")
        motion = names[wanted.lower()]
        made_for = adapters[motion].family
        if made_for != family:
            raise UserError(
                f"The motion adapter `{motion}` is made for {ARCHITECTURE_NAMES.get(made_for, made_for)}, and the model "
                f"`{model.display_name}` is {ARCHITECTURE_NAMES.get(family, family)}. Choose a motion adapter for "
                f"{ARCHITECTURE_NAMES.get(family, family)} or another `--model`."
            )
    else:
        fitting = [name for name, entry in adapters.items() if entry.family == family]
        if not fitting:
            raise UserError(
                f"Clips need an AnimateDiff motion adapter for {ARCHITECTURE_NAMES.get(family, family)} (the model "
                f"`{model.display_name}`), and none is configured here. An admin sets SDBOT_MOTION_ADAPTERS "
                "(e.g. `v3=guoyww/animatediff-motion-adapter-v1-5-3`, downloaded once)."
            )
        motion = fitting[0]
    return motion, _cameras(ctx, model, values.get("camera"))


def _cameras(ctx: Context, model: ModelEntry, text: str | None) -> tuple[CameraRef, ...]:
    if text is None:
        return ()
    known = {name.lower(): name for name in (TINY_CAMERAS if model.kind == "tiny" else ctx.settings.motion_loras)}
    problems: list[str] = []
    cameras: list[CameraRef] = []
    for item in (part.strip() for part in text.split(",") if part.strip()):
        name, _, weight_text = item.partition(":")
        if name.lower() not in known:
            choices = ", ".join(f"`{n}`" for n in known.values()) or "none are configured (an admin sets SDBOT_MOTION_LORAS)"
            problems.append(f"I don't know the camera move `{name}`. Camera moves: {choices}.")
            continue
        weight = bounded_number(weight_text or None, f"--camera {quoted(item)}", float, 0, 2, 1.0, problems)
        cameras.append(CameraRef(name=known[name.lower()], weight=weight))
    if not cameras and not problems:
        problems.append("`--camera` needs a name, e.g. `--camera zoom-in:0.8`.")
    if model.family == "sdxl" and cameras:
        problems.append("Camera moves are motion LoRAs for SD 1.x motion adapters; they don't work on SDXL models.")
    if len(cameras) > MAX_CAMERAS:
        problems.append(f"Use at most {MAX_CAMERAS} camera moves at once; you gave {len(cameras)}.")
    _raise(problems)
    return tuple(cameras)


def _clip_size(
    ctx: Context, spec: GenerationSpec, opts: ImagineOptions, notes: list[str], *, init: InitImage | None = None
) -> tuple[int, int]:
    """A frame's size: `--size` as given (within SDBOT_MAX_CLIP_PIXELS, else an error), or the
    derived size (the picture's, the aspect ratio's or the model's) fitted to it, said in a note."""
    limit = ctx.settings.max_clip_pixels
    if opts.size is not None:
        width, height = opts.size
        if width * height > limit:
            raise UserError(
                f"A clip's frames may be {limit:,} pixels at most (e.g. {math.isqrt(limit)}x{math.isqrt(limit)}); "
                f"`--size {width}x{height}` is {width * height:,}. Choose a smaller size."
            )
        return width, height
    if init is not None and opts.ar is None:  # the picture's (or clip's) proportions, at the model's area
        return fit_frame(init.width, init.height, min(limit, _model(ctx, spec).native_size ** 2))
    fitted = fit_frame(spec.width, spec.height, limit)
    if fitted != (spec.width, spec.height):
        notes.append(f"Frames are drawn at {fitted[0]}x{fitted[1]}, within the clip limit of {limit:,} pixels.")
    return fitted


def _windows(ctx: Context, frames: int, notes: list[str]) -> dict[str, int]:
    context, stride = ctx.settings.animate_context_frames, ctx.settings.animate_context_stride
    if frames > context:
        notes.append(f"{frames} frames are drawn in overlapping windows of {context} frames (what the motion model sees at once).")
    return {"context": context, "stride": stride}


def _clip_job(spec: GenerationSpec, kind: str, clip: ClipSpec, size: tuple[int, int], **fields: Any) -> GenerationSpec:
    """The drawing spec `submit` resolved, made into a clip job of `kind`."""
    update = {
        "kind": kind,
        "clip": clip,
        "width": size[0],
        "height": size[1],
        "n": 1,
        "tile": False,
        "regions": None,
        "base_ratio": None,
        "controls": (),
        "init_image": None,
        "strength": None,
        "operation": fields.pop("operation", None),
        **fields,
    }
    return spec.evolve(**update)
