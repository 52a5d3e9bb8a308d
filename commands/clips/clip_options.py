"""The options every clip command shares, declared once, and the checks that shape a clip job:
motion adapters and camera LoRAs, the frame size within SDBOT_MAX_CLIP_PIXELS, and context
windows."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from commands.frame.context import Context
from commands.frame.declare import Option, read_flags
from commands.frame.errors import UserError
from commands.frame.numbers import check_number, quoted
from commands.frame.parser import Flags
from commands.frame.types import Request
from commands.jobs.options import ImagineOptions, InitImage, read_options
from commands.jobs.options import drawing_options as drawing_options_named
from commands.jobs.sources import fit_frame
from config import Settings
from config.models import ARCHITECTURE_NAMES, TINY, ModelEntry
from generation.models import families
from generation.spec import CameraRef, ClipSpec, GenerationSpec

TINY_MOTION = "tiny"  # the built-in motion adapter of the tiny model
TINY_CAMERAS = ("tiny-zoom",)  # the built-in camera LoRA of the tiny model
MAX_CAMERAS = 3
MAX_CAMERA_WEIGHT = 2.0

# The drawing options every clip takes (a clip has no batch, tiles or regions).
CLIP_DRAWING = drawing_options_named("no", "seed", "steps", "cfg", "sampler", "model", "size", "ar", "clip_skip", "vae", "style", "lora")
FPS = Option("fps", "int", "Frames per second", bounds=lambda s: (1, s.max_fps), default=lambda s: s.default_fps, example="8")
LOOP = Option("loop", "switch", "Played forward, then backward, so it loops without a jump", default=False)
MOTION = Option(
    "motion", "text", "An AnimateDiff motion adapter (SDBOT_MOTION_ADAPTERS)", default="the first that fits the model", example="v3"
)
CAMERA = Option(
    "camera",
    "text",
    f"Camera-motion LoRAs with weights 0–{MAX_CAMERA_WEIGHT:g}, e.g. zoom-in:0.8 (up to {MAX_CAMERAS})",
    aliases=("cameras",),
    example="zoom-in:0.8",
)
# The clip's own options: kept apart from the drawing options when flags are read.
CLIP_KEYS = ("frames", "fps", "loop", "motion", "camera", "zoom", "angle", "tx", "ty", "color")


def frames_option(low: int | Callable[[Settings], int], high: Callable[[Settings], int], default: Callable[[Settings], int]) -> Option:
    """`--frames` of one clip command (each has its own bounds)."""
    return Option(
        "frames",
        "int",
        "Frames in the clip",
        bounds=lambda s: (low(s) if callable(low) else low, high(s)),
        default=default,
        example="16",
    )


def parse_clip_flags(
    request: Request, args: str, options: tuple[Option, ...], *, keep_strength: bool = False
) -> tuple[Flags, dict[str, Any], dict[str, Any]]:
    """The flags (typed in the text or sent typed by the platform), the drawing options' values,
    and the clip's own values."""
    flags = read_flags(request.options, args, options)
    values = {key: unquote(value) if isinstance(value, str) else value for key, value in flags.values.items()}
    clip_values = {key: values.pop(key) for key in (*CLIP_KEYS, *(("strength",) if keep_strength else ())) if key in values}
    return flags, values, clip_values


def drawing_options(ctx: Context, flags: Flags, values: dict[str, str], problems: list[str]) -> ImagineOptions:
    """The drawing options checked as /imagine checks them; every problem found so far, the
    clip's included, comes in one reply."""
    return read_options(
        values, ctx.settings, ctx.registry, written=flags.written, prompt=unquote(flags.text), problems=[*flags.problems, *problems]
    )


def unquote(text: str) -> str:
    """`"0:(1.02)"` → `0:(1.02)`: people quote schedules and prompt schedules as Deforum's docs do."""
    text = text.strip()
    for left, right in (('"', '"'), ("'", "'"), ("“", "”")):
        if len(text) >= 2 and text.startswith(left) and text.endswith(right):
            return text[1:-1].strip()
    return text


def raise_problems(problems: list[str]) -> None:
    if problems:
        raise UserError(*dict.fromkeys(problems))


def model_entry(ctx: Context, spec: GenerationSpec) -> ModelEntry:
    return ctx.registry.get(spec.model) or ctx.registry.default


def motion_and_cameras(ctx: Context, model: ModelEntry, values: dict[str, str]) -> tuple[str, tuple[CameraRef, ...]]:
    """The motion adapter (by `--motion` or the first that fits the model) and camera LoRAs."""
    adapters = ctx.settings.motion_adapters
    family = model.family
    why = families.family(family).why_not("animate")
    if why is not None:
        raise UserError(f"Clips can't be drawn with `{model.display_name}`: {why}. Pick an SD 1.x or SDXL model with `--model`.")
    wanted = (values.get("motion") or "").strip()
    tiny = model.source == TINY
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
    return motion, camera_refs(ctx, model, values.get("camera"))


def camera_refs(ctx: Context, model: ModelEntry, text: str | None) -> tuple[CameraRef, ...]:
    if text is None:
        return ()
    known = {name.lower(): name for name in (TINY_CAMERAS if model.source == TINY else ctx.settings.motion_loras)}
    problems: list[str] = []
    cameras: list[CameraRef] = []
    for item in (part.strip() for part in text.split(",") if part.strip()):
        name, _, weight_text = item.partition(":")
        if name.lower() not in known:
            choices = ", ".join(f"`{n}`" for n in known.values()) or "none are configured (an admin sets SDBOT_MOTION_LORAS)"
            problems.append(f"I don't know the camera move `{name}`. Camera moves: {choices}.")
            continue
        weight, problem = check_number(weight_text or "1", f"--camera {quoted(item)}", float, 0, MAX_CAMERA_WEIGHT)
        if problem is not None:
            problems.append(problem)
        cameras.append(CameraRef(name=known[name.lower()], weight=weight if weight is not None else 1.0))
    if not cameras and not problems:
        problems.append("`--camera` needs a name, e.g. `--camera zoom-in:0.8`.")
    why = families.family(model.family).why_not("camera_moves")
    if why is not None and cameras:
        problems.append(f"{why[0].upper()}{why[1:]}.")
    if len(cameras) > MAX_CAMERAS:
        problems.append(f"Use at most {MAX_CAMERAS} camera moves at once; you gave {len(cameras)}.")
    raise_problems(problems)
    return tuple(cameras)


def clip_size(
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
        return fit_frame(init.width, init.height, min(limit, model_entry(ctx, spec).native_size ** 2))
    fitted = fit_frame(spec.width, spec.height, limit)
    if fitted != (spec.width, spec.height):
        notes.append(f"Frames are drawn at {fitted[0]}x{fitted[1]}, within the clip limit of {limit:,} pixels.")
    return fitted


def context_windows(ctx: Context, frames: int, notes: list[str]) -> dict[str, int]:
    context, stride = ctx.settings.animate_context_frames, ctx.settings.animate_context_stride
    if frames > context:
        notes.append(f"{frames} frames are drawn in overlapping windows of {context} frames (what the motion model sees at once).")
    return {"context": context, "stride": stride}


def clip_job(spec: GenerationSpec, kind: str, clip: ClipSpec, size: tuple[int, int], **fields: Any) -> GenerationSpec:
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


def steps_problems(steps: int, strengths: list[float]) -> list[str]:
    weakest = min(strengths, default=1.0)
    if int(steps * weakest) >= 1:
        return []
    return [
        f"With strength {weakest:g} and {steps} steps no denoising step would run: use at least "
        f"{math.ceil(1 / weakest)} steps or a higher `--strength`."
    ]
