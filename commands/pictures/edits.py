"""Edits of one image: /upscale, /vary, /zoom, /pan, /inpaint, /facefix, and the buttons under
every single image (Upscale 2x, Vary (Subtle), Zoom Out 2x, ⬅, Face fix, ...).

A command works as a reply to any image (the bot's, resolved through the message refs, or one a
person posted), or with the image attached; a button works on the image it is under. Both end in
`queue_edit`: a new job whose parent is the image's job, of a kind the engine knows
(`generation.spec.JobKind`), after every limit was checked here — nothing is queued that the
engine would have to refuse for a reason the user could have been told now.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from commands.frame.context import Context
from commands.frame.declare import Option, read_flags, read_value
from commands.frame.errors import UserError
from commands.frame.numbers import quoted, read_float
from commands.frame.types import Reply, Request
from commands.jobs.options import ImagineOptions, InitImage, drawing_options, read_options
from commands.jobs.sources import Source, find_source
from commands.jobs.submit import submit
from generation.models.families import family
from generation.spec import CODEFORMER_FIDELITY, OUTPAINT_MASK_BLUR, UPSCALE_METHODS, GenerationSpec

# Image-relative options accepted by every edit that draws (they tune the diffusion model).
DRAW_OPTIONS = drawing_options("no", "seed", "steps", "cfg", "sampler", "model", "strength", "vae")
UPSCALE_FACTORS = (2, 4)
ZOOM_RANGE = (1.1, 2.0)  # /zoom takes any factor in here; the buttons use 1.5 and 2
IMAGE = Option("image", "file", "The picture (or reply to one)")
EDIT_PROMPT = Option(
    "prompt", "text", "A prompt for what is drawn new (default: the picture's own), and --options", positional=True, rest=True
)
UPSCALE_OPTIONS: tuple[Option, ...] = (
    Option("factor", "int", "How much larger", choices=tuple(map(str, UPSCALE_FACTORS)), default=2, positional=True),
    IMAGE,
    Option("method", "choice", "How", choices=UPSCALE_METHODS, default="the bot's (SDBOT_UPSCALE_METHOD)"),
    Option("upscaler", "text", "A configured upscaler model (SDBOT_UPSCALERS)", default="the first", example="4x-ultrasharp"),
    *DRAW_OPTIONS,
)
VARY_OPTIONS: tuple[Option, ...] = (
    Option(
        "how",
        "choice",
        "subtle keeps the composition; strong changes more",
        choices=("subtle", "strong"),
        default="strong",
        positional=True,
    ),
    EDIT_PROMPT,
    IMAGE,
    *DRAW_OPTIONS,
)
ZOOM_OPTIONS: tuple[Option, ...] = (
    Option("factor", "text", f"How far to zoom out, {ZOOM_RANGE[0]:g}–{ZOOM_RANGE[1]:g}", default="2", positional=True),
    EDIT_PROMPT,
    IMAGE,
    *DRAW_OPTIONS,
)
PAN_OPTIONS: tuple[Option, ...] = (
    Option("direction", "choice", "Which side grows", choices=("left", "right", "up", "down"), positional=True, required=True),
    EDIT_PROMPT,
    IMAGE,
    *DRAW_OPTIONS,
)
# CodeFormer's fidelity weight w: 0 restores the most (from its codebook), 1 keeps the most of the face.
FIDELITY = Option(
    "fidelity",
    "float",
    "How close to the original face CodeFormer stays: 0 restores the most, 1 keeps the most",
    aliases=("w", "fidelity-weight", "codeformer-weight"),
    bounds=(0.0, 1.0),
    default=CODEFORMER_FIDELITY,
    example="0.7",
    applies="CodeFormer face models only",
)
FACEFIX_OPTIONS: tuple[Option, ...] = (
    IMAGE,
    Option("model", "text", "A configured face-restoration model (SDBOT_FACE_RESTORERS)", default="the first", example="gfpgan"),
    FIDELITY,
)
PANS = {"left": "⬅", "right": "➡", "up": "⬆", "down": "⬇"}
PAN_ALIASES = {
    "l": "left",
    "r": "right",
    "u": "up",
    "d": "down",
    "⬅": "left",
    "➡": "right",
    "⬆": "up",
    "⬇": "down",
    "⬅️": "left",
    "➡️": "right",
    "⬆️": "up",
    "⬇️": "down",
}
VARY_KINDS = ("subtle", "strong")


@dataclass(frozen=True)
class Edit:
    """What to do to an image: the job kind, its label (shown, and written into the PNG),
    options for the diffusion model, and a function that fixes the job's size and fields."""

    kind: str
    label: str
    opts: ImagineOptions = field(default_factory=ImagineOptions)
    shape: Callable[[Context, GenerationSpec, InitImage, list[str]], dict[str, Any]] | None = None
    extra_blobs: tuple[tuple[InitImage, int], ...] = ()


# --- the buttons --------------------------------------------------------------------------------


def button_edit(ctx: Context, verb: str) -> Edit:
    """The edit behind a single-image button; ids are `<verb>:<image number>`."""
    if verb in ("up2x", "up4x"):
        return upscale_edit(ctx, 2 if verb == "up2x" else 4, None, None)
    if verb in VARY_KINDS:
        return vary_edit(ctx, verb, ImagineOptions())
    if verb in ("zoom1.5", "zoom2"):
        return zoom_edit(ctx, 1.5 if verb == "zoom1.5" else 2.0, ImagineOptions())
    if verb.startswith("pan-"):
        return pan_edit(ctx, verb.removeprefix("pan-"), ImagineOptions())
    if verb == "facefix":
        return facefix_edit(ctx, None)
    raise UserError("That button isn't available any more.")


# --- queueing ------------------------------------------------------------------------------------


async def queue_edit(ctx: Context, request: Request, source: Source, edit: Edit) -> list[Reply]:
    if source.init is None:
        raise UserError(f"{edit.label} works on a picture: reply to one with the command, or attach one to it.")
    init = source.init

    def shape(spec: GenerationSpec, notes: list[str]) -> GenerationSpec:
        if edit.kind not in ("img2img", "inpaint"):
            notes.clear()  # "drawn at WxH" does not apply: these keep (or set) the picture's size
        # A seamless texture stays one when varied; a zoom, pan or upscale of it is a picture.
        fields: dict[str, Any] = {"kind": edit.kind, "operation": edit.label, "tile": spec.tile and edit.kind == "img2img"}
        if edit.shape is not None:
            fields.update(edit.shape(ctx, spec, init, notes))
        shaped = spec.evolve(**{"n": 1, **fields})  # a shape may set n again (a later key wins, as before)
        if shaped.diffusion and shaped.strength is not None and int(shaped.steps * shaped.strength) < 1:
            # A picture drawn in very few steps: run at least one denoising step, and say so.
            need = math.ceil(1 / shaped.strength)
            notes.append(f"{edit.label} at strength {shaped.strength:g} runs {need} steps, so that at least one denoises.")
            shaped = shaped.evolve(steps=need)
        return shaped

    return await submit(
        ctx,
        request,
        edit.opts,
        init=init,
        upload_size=source.upload_size,
        base=source.base,
        parent=source.parent,
        shape=shape,
        extra_blobs=edit.extra_blobs,
    )


def _strength(opts: ImagineOptions, default: float) -> float:
    return opts.strength if opts.strength is not None else default


# --- the edits ------------------------------------------------------------------------------------


def upscale_edit(ctx: Context, factor: float, method: str | None, upscaler: str | None, opts: ImagineOptions = ImagineOptions()) -> Edit:
    s = ctx.settings
    if method is None:
        method = s.default_upscale_method
        if method == "auto":
            method = "esrgan" if s.upscalers else "lanczos"
    if method == "esrgan" and not s.upscalers:
        raise UserError(
            "`--method esrgan` needs a super-resolution model, and none is configured here. An admin can set "
            "SDBOT_UPSCALERS (name=/path/to/model.safetensors). Meanwhile use `--method lanczos` or `hires`."
        )
    if upscaler is not None:
        upscaler = _configured(upscaler, s.upscalers, "upscaler", "SDBOT_UPSCALERS")
    elif method in ("esrgan", "hires") and s.upscalers:
        upscaler = next(iter(s.upscalers))

    def shape(ctx: Context, spec: GenerationSpec, init: InitImage, notes: list[str]) -> dict[str, Any]:
        width, height = round(init.width * factor), round(init.height * factor)
        limit = s.max_pixels if method == "latent" else s.max_upscale_pixels
        if width * height > limit:
            hint = " `--method hires` works in tiles and goes further." if method == "latent" else ""
            raise UserError(
                f"Upscaling {init.width}x{init.height} by {factor:g} gives {width}x{height} ({width * height:,} pixels); "
                f"the limit for {method} is {limit:,} pixels. Use a smaller factor or a smaller image.{hint}"
            )
        strength = None
        if method in ("hires", "latent"):
            strength = _strength(opts, s.hires_strength if method == "hires" else s.latent_strength)
        return {
            "scale": factor,
            "upscale_method": method,
            "upscaler": upscaler if method in ("esrgan", "hires") else None,
            "strength": strength,
            "width": width,
            "height": height,
        }

    return Edit("upscale", f"Upscale {factor:g}x ({method})", opts, shape)


def vary_edit(ctx: Context, how: str, opts: ImagineOptions) -> Edit:
    default = ctx.settings.vary_subtle_strength if how == "subtle" else ctx.settings.vary_strong_strength

    def shape(ctx: Context, spec: GenerationSpec, init: InitImage, notes: list[str]) -> dict[str, Any]:
        return {"strength": _strength(opts, default)}

    return Edit("img2img", f"Vary ({how.capitalize()})", opts, shape)


def zoom_edit(ctx: Context, factor: float, opts: ImagineOptions) -> Edit:
    def shape(ctx: Context, spec: GenerationSpec, init: InitImage, notes: list[str]) -> dict[str, Any]:
        grow = lambda side: side * factor  # noqa: E731
        return _canvas(ctx, spec, init, grow(init.width), grow(init.height), "center", notes) | {
            "strength": _strength(opts, ctx.settings.outpaint_strength),
            "mask_blur": OUTPAINT_MASK_BLUR,
        }

    return Edit("outpaint", f"Zoom Out {factor:g}x", opts, shape)


def pan_edit(ctx: Context, direction: str, opts: ImagineOptions) -> Edit:
    def shape(ctx: Context, spec: GenerationSpec, init: InitImage, notes: list[str]) -> dict[str, Any]:
        wide = direction in ("left", "right")
        width = init.width * 1.5 if wide else init.width
        height = init.height if wide else init.height * 1.5
        return _canvas(ctx, spec, init, width, height, direction, notes) | {
            "strength": _strength(opts, ctx.settings.outpaint_strength),
            "mask_blur": OUTPAINT_MASK_BLUR,
        }

    return Edit("outpaint", f"Pan {direction}", opts, shape)


def facefix_edit(ctx: Context, model: str | None, fidelity: float | None = None) -> Edit:
    s = ctx.settings
    if not s.face_restorers:
        raise UserError(
            "Face fix needs a face-restoration model, and none is configured here. An admin can set "
            "SDBOT_FACE_RESTORERS (name=/path/to/GFPGANv1.4.safetensors; GFPGAN and RestoreFormer work, "
            "CodeFormer where the admin installed spandrel_extra_arches)."
        )
    name = _configured(model, s.face_restorers, "face model", "SDBOT_FACE_RESTORERS") if model else next(iter(s.face_restorers))

    def shape(ctx: Context, spec: GenerationSpec, init: InitImage, notes: list[str]) -> dict[str, Any]:
        # The fidelity is CodeFormer's: only the engine knows a model's architecture, and refuses it for others.
        return {"face_model": name, "face_fidelity": fidelity, "width": init.width, "height": init.height, "strength": None}

    return Edit("facefix", "Face fix", ImagineOptions(), shape)


def _canvas(
    ctx: Context, spec: GenerationSpec, init: InitImage, width: float, height: float, anchor: str, notes: list[str]
) -> dict[str, Any]:
    """The grown canvas (sides multiples of 8, or of what the model's family needs) and where the
    image sits in it. Past the pixel or side limit everything is scaled down to fit, and the note
    says so."""
    s = ctx.settings
    model = ctx.registry.get(spec.model)
    multiple = family(model.family).size_multiple if model is not None else 8
    inner_w, inner_h = init.width, init.height
    canvas_w, canvas_h = _up(width, multiple), _up(height, multiple)
    scale = min(1.0, math.sqrt(s.max_pixels / (canvas_w * canvas_h)), s.max_side / max(canvas_w, canvas_h))
    if scale < 1.0:
        asked = f"{canvas_w}x{canvas_h}"
        while True:
            inner_w, inner_h = max(8, int(init.width * scale)), max(8, int(init.height * scale))
            canvas_w, canvas_h = _up(width * scale, multiple), _up(height * scale, multiple)
            if canvas_w * canvas_h <= s.max_pixels and max(canvas_w, canvas_h) <= s.max_side:
                break
            scale *= 0.98
        notes.append(
            f"{asked} would pass this bot's limit of {s.max_pixels:,} pixels, so the picture is {canvas_w}x{canvas_h} "
            f"with your image scaled to {inner_w}x{inner_h}."
        )
    x = {"left": canvas_w - inner_w, "right": 0}.get(anchor, (canvas_w - inner_w) // 2)
    y = {"up": canvas_h - inner_h, "down": 0}.get(anchor, (canvas_h - inner_h) // 2)
    return {"width": canvas_w, "height": canvas_h, "placement": (x, y, inner_w, inner_h)}


def _up(value: float, multiple: int) -> int:
    return max(multiple, math.ceil(round(value, 6) / multiple) * multiple)


def _configured(name: str, configured: dict[str, str], what: str, key: str) -> str:
    for known in configured:
        if known.lower() == name.strip().lower():
            return known
    choices = ", ".join(configured) or f"none (set {key})"
    raise UserError(f"There's no {what} named `{name}`. Here: {choices}.")


# --- the commands ---------------------------------------------------------------------------------


async def upscale_command(ctx: Context, request: Request, args: str) -> list[Reply]:
    flags = read_flags(request.options, args, UPSCALE_OPTIONS)
    problems = list(flags.problems)
    factor = _choice(
        flags.text or "2",
        {str(f): f for f in UPSCALE_FACTORS} | {f"{f}x": f for f in UPSCALE_FACTORS},
        "/upscale takes 2 or 4 (e.g. `/upscale 4`)",
        problems,
    )
    method = read_value(UPSCALE_OPTIONS[2], flags.values, ctx.settings, problems, flags.written, default="")
    upscaler = flags.values.pop("upscaler", None) or None
    flags.values.pop("method", None)
    opts = draw_options(ctx, flags.values, flags.written, "", problems)
    edit = upscale_edit(ctx, factor, method or None, upscaler, opts)
    return await queue_edit(ctx, request, await find_source(ctx, request), edit)


async def vary_command(ctx: Context, request: Request, args: str) -> list[Reply]:
    flags = read_flags(request.options, args, VARY_OPTIONS)
    problems = list(flags.problems)
    first, _, prompt = flags.text.partition(" ")
    how = first.lower() if first.lower() in VARY_KINDS else "strong"
    if first and first.lower() not in VARY_KINDS:
        prompt = flags.text
    opts = draw_options(ctx, flags.values, flags.written, prompt, problems)
    return await queue_edit(ctx, request, await find_source(ctx, request), vary_edit(ctx, how, opts))


async def zoom_command(ctx: Context, request: Request, args: str) -> list[Reply]:
    flags = read_flags(request.options, args, ZOOM_OPTIONS)
    problems = list(flags.problems)
    first, _, prompt = flags.text.partition(" ")
    factor = 2.0
    if first:
        number = read_float(first.lower().rstrip("x"))
        if number is None:
            prompt = flags.text
        else:
            factor = number
            if not ZOOM_RANGE[0] <= factor <= ZOOM_RANGE[1]:
                problems.append(f"Zoom out by {ZOOM_RANGE[0]:g} to {ZOOM_RANGE[1]:g} (e.g. `/zoom 1.5`); you wrote `{quoted(first)}`.")
    opts = draw_options(ctx, flags.values, flags.written, prompt, problems)
    return await queue_edit(ctx, request, await find_source(ctx, request), zoom_edit(ctx, factor, opts))


async def pan_command(ctx: Context, request: Request, args: str) -> list[Reply]:
    flags = read_flags(request.options, args, PAN_OPTIONS)
    problems = list(flags.problems)
    first, _, prompt = flags.text.partition(" ")
    direction = PAN_ALIASES.get(first.lower(), first.lower())
    if direction not in PANS:
        problems.append("Say which way: `/pan left`, `/pan right`, `/pan up` or `/pan down`.")
    opts = draw_options(ctx, flags.values, flags.written, prompt, problems)
    return await queue_edit(ctx, request, await find_source(ctx, request), pan_edit(ctx, direction, opts))


async def facefix_command(ctx: Context, request: Request, args: str) -> list[Reply]:
    flags = read_flags(request.options, args, FACEFIX_OPTIONS)
    problems = list(flags.problems)
    # Not given is None, not the declared default: the default is CodeFormer's, and other models take none.
    given = flags.values.get("fidelity") is not None
    fidelity = read_value(FIDELITY, flags.values, ctx.settings, problems, flags.written) if given else None
    if problems:
        raise UserError(*problems)
    if flags.text:
        raise UserError("/facefix takes no text; pick a model with `--model NAME` (and CodeFormer's `--fidelity 0–1`).")
    edit = facefix_edit(ctx, flags.values.get("model") or None, fidelity)
    return await queue_edit(ctx, request, await find_source(ctx, request), edit)


def _choice(text: str, choices: dict[str, Any], problem: str, problems: list[str]) -> Any:
    value = choices.get(text.strip().lower())
    if value is None:
        problems.append(f"{problem}; you wrote `{quoted(text)}`.")
        return next(iter(choices.values()))
    return value


def draw_options(ctx: Context, values: dict[str, str], written: dict[str, str], prompt: str, problems: list[str]) -> ImagineOptions:
    """The diffusion flags, checked like /imagine's; raises with every problem found so far."""
    return read_options(values, ctx.settings, ctx.registry, written=written, prompt=prompt, problems=problems)
