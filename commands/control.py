"""/control and /edit: drawing steered by a picture's structure, and pictures edited by instruction.

    /control canny a fox in the snow        as a reply to a picture, or with one attached
    /control depth a castle --control-weight 0.8 --start 0 --end 0.6 --control-mode prompt
    /control canny a fox --control depth:0.5      several controls from one picture (multi-ControlNet)
    /control openpose a dancer --pre none         the picture is the map (e.g. a map the bot showed)
    /control qr https://example.com a mountain village      a QR code hidden in the picture
    /edit make it winter --image-cfg 1.5          Instruct Pix2Pix, as a reply to a picture

A control job draws from the prompt (txt2img), steered by the picture's map, at the picture's
proportions and the model's native area unless `--size`/`--ar` say otherwise. Everything is
checked here, before anything is queued: the type and its preprocessor's model files, a
ControlNet of that type that fits the job's model, the bounds of every number, the QR text.
"""

from __future__ import annotations

import re
from typing import Any

from commands.context import Context
from commands.errors import UserError
from commands.imagine import Source, find_source
from commands.options import IMAGINE_FLAGS, ImagineOptions, bounded_number, fit_size, picture_size, read_options
from commands.parser import parse_flags
from commands.submit import submit
from commands.types import Reply, Request
from config.models import default_name
from generation.control.catalog import NEEDS, PREPROCESSORS, TINY_PIX2PIX, choose_controlnet, control_type, preprocessor_for
from generation.control.qr import QRTextError, make_code
from generation.spec import CONTROL_TYPES, ControlRef, GenerationSpec

DRAWING = {k: v for k, v in IMAGINE_FLAGS.items() if v not in ("strength", "tile")}
CONTROL_FLAGS = {
    **DRAWING,
    "control-weight": "weight",
    "cw": "weight",
    "weight": "weight",
    "start": "start",
    "end": "end",
    "control-mode": "mode",
    "mode": "mode",
    "control-model": "control_model",
    "pre": "pre",
    "preprocessor": "pre",
    "low": "low",
    "high": "high",
    "control": "control",
}
EDIT_FLAGS = {k: v for k, v in IMAGINE_FLAGS.items() if v in ("no", "seed", "steps", "cfg", "sampler", "n", "size", "ar")}
EDIT_FLAGS |= {"image-cfg": "image_cfg", "image-cfg-scale": "image_cfg", "icfg": "image_cfg"}
MAX_CONTROLS = 3  # ControlNet units in one job
MODES = {"balanced": "balanced", "prompt": "prompt", "my-prompt": "prompt", "control": "control", "controlnet": "control"}
_UNIT = re.compile(r"^\s*([\w-]+)\s*(?::\s*([^\s,]+))?\s*$")


# --- /control -----------------------------------------------------------------------------------------


async def control_command(ctx: Context, request: Request, args: str) -> list[Reply]:
    flags = parse_flags(args, CONTROL_FLAGS)
    problems = list(flags.problems)
    values = dict(flags.values)
    control_values = {
        key: values.pop(key)
        for key in ("weight", "start", "end", "mode", "control_model", "pre", "low", "high", "control")
        if key in values
    }
    first, _, rest = flags.text.partition(" ")
    type_ = control_type(first) if first else None
    if type_ is None:
        raise UserError(
            (f"`{first}` is no control type I know. " if first else "Say which control to use: ")
            + f"`/control TYPE <prompt>`, TYPE one of {', '.join(CONTROL_TYPES)} (e.g. `/control canny a fox in the snow`)."
        )
    text = None
    own_map = (control_values.get("pre") or "").strip().lower() == "none"  # the picture is the map
    if type_ == "qr" and not own_map:
        text, _, rest = rest.strip().partition(" ")
        try:
            make_code(text)
        except QRTextError as error:
            problems.append(str(error))
    opts = read_options(values, ctx.settings, ctx.registry, written=flags.written, prompt=rest, problems=problems)
    if opts.regions and opts.regions != "off":
        raise UserError("`--regions` and ControlNet don't work together yet; leave out one of them.")
    source = Source() if text is not None else await _picture(ctx, request, type_)
    return await _queue_control(ctx, request, opts, source, type_, text, control_values)


async def _picture(ctx: Context, request: Request, type_: str) -> Source:
    source = await find_source(ctx, request)
    if source.init is None:
        raise UserError(
            f"`/control {type_}` needs a picture: reply to one with the command, or attach one to it (its map steers the drawing)."
        )
    return source


async def _queue_control(
    ctx: Context,
    request: Request,
    opts: ImagineOptions,
    source: Source,
    type_: str,
    text: str | None,
    raw: dict[str, str],
) -> list[Reply]:
    problems: list[str] = []
    weight = bounded_number(raw.get("weight"), "--control-weight", float, 0, 2, 1.0, problems)
    start = bounded_number(raw.get("start"), "--start", float, 0, 1, 0.0, problems)
    end = bounded_number(raw.get("end"), "--end", float, 0, 1, 1.0, problems)
    if start >= end and not problems:
        problems.append(f"`--start {start:g}` must come before `--end {end:g}` (fractions of the steps, 0 to 1).")
    mode = MODES.get((raw.get("mode") or "balanced").strip().lower())
    if mode is None:
        problems.append(f"`--control-mode {raw['mode']}`: use balanced, prompt (my prompt is more important) or control.")
    units = [(type_, weight, raw.get("pre"))]
    for item in raw["control"].split(",") if raw.get("control") else []:
        match = _UNIT.match(item)
        extra = control_type(match[1]) if match else None
        if extra is None or extra == "qr":
            problems.append(
                f"`--control {item.strip()}`: write TYPE:WEIGHT with a type of {', '.join(t for t in CONTROL_TYPES if t != 'qr')}, e.g. `--control depth:0.5`."
            )
            continue
        units.append((extra, bounded_number(match[2] if match else None, f"--control {item.strip()}", float, 0, 2, 1.0, problems), None))  # type: ignore[index]
    if len(units) > MAX_CONTROLS:
        problems.append(f"A job takes at most {MAX_CONTROLS} controls; this one has {len(units)}.")
    low = bounded_number(raw.get("low"), "--low", int, 0, 255, None, problems)
    high = bounded_number(raw.get("high"), "--high", int, 0, 255, None, problems)
    if (low is not None or high is not None) and type_ != "canny":
        problems.append("`--low` and `--high` are Canny's thresholds; they go with `/control canny`.")
    if low is not None and high is not None and low >= high:
        problems.append(f"`--low {low}` must be below `--high {high}`.")
    checked = []
    for unit_type, unit_weight, pre in units:
        preprocessor = preprocessor_for(unit_type, pre)
        if preprocessor is None:
            choices = ", ".join([*PREPROCESSORS[unit_type], "none"])
            problems.append(f"`--pre {pre}` is no preprocessor for {unit_type}; choose {choices}.")
            continue
        needed = NEEDS.get(preprocessor)
        if needed and not _configured(ctx, needed):
            problems.append(
                f"The {preprocessor} preprocessor needs {needed}, which is not set here; ask an admin to set it, "
                f"or give your own map with `--pre none`."
            )
        checked.append((unit_type, unit_weight, preprocessor))
    if not opts.prompt:
        problems.append(f"Say what to draw, e.g. `/control {type_} a fox in the snow`.")
    if problems:
        raise UserError(*dict.fromkeys(problems))
    init = source.init

    def shape(spec: GenerationSpec, notes: list[str]) -> GenerationSpec:
        model = ctx.registry.get(spec.model) or ctx.registry.default
        refs, refused = [], []
        for index, (unit_type, unit_weight, preprocessor) in enumerate(checked):
            try:  # `--control-model` names the first control's ControlNet; the others take their type's
                choice = choose_controlnet(ctx.settings.controlnets, model, unit_type, raw.get("control_model") if index == 0 else None)
            except ValueError as error:
                refused.append(str(error))
                continue
            canny = unit_type == "canny" and preprocessor == "canny"
            refs.append(
                ControlRef(
                    type=unit_type,
                    model=choice.name,
                    preprocessor=preprocessor,
                    weight=unit_weight,
                    start=start,
                    end=end,  # type: ignore[arg-type]
                    image=init.blob_key if init else None,
                    text=text,
                    low=low if canny else None,
                    high=high if canny else None,
                )
            )
        if refused:
            raise UserError(*dict.fromkeys(refused))
        size = {}
        if init is not None and opts.size is None and opts.ar is None:  # the picture's proportions, native area
            native = model.native_size
            size = dict(zip(("width", "height"), fit_size(init.width, init.height, native * native, ctx.settings), strict=True))
        return spec.evolve(controls=tuple(refs), control_mode=mode, **size)

    extra = ((init, source.upload_size),) if init is not None and source.upload_size is not None else ()
    return await submit(ctx, request, opts, parent=source.parent, shape=shape, extra_blobs=extra)


def _configured(ctx: Context, setting: str) -> bool:
    return bool({"SDBOT_DEPTH_MODEL": ctx.settings.depth_model, "SDBOT_ANNOTATORS": ctx.settings.annotators}[setting])


# --- /edit ------------------------------------------------------------------------------------------------


def instruct_model_name(ctx: Context) -> str:
    """The name of the Instruct Pix2Pix model /edit runs on; UserError when there is none."""
    if ctx.settings.instruct_model:
        return default_name(ctx.settings.instruct_model)
    if ctx.registry.default.kind == "tiny":
        return TINY_PIX2PIX
    raise UserError(
        "/edit needs an Instruct Pix2Pix model, and none is configured here. An admin sets SDBOT_INSTRUCT_MODEL "
        "(e.g. timbrooks/instruct-pix2pix, downloaded once)."
    )


async def edit_command(ctx: Context, request: Request, args: str) -> list[Reply]:
    flags = parse_flags(args, EDIT_FLAGS)
    values = dict(flags.values)
    problems = list(flags.problems)
    image_cfg = bounded_number(values.pop("image_cfg", None), "--image-cfg", float, 0, 10, ctx.settings.instruct_image_cfg, problems)
    opts = read_options(values, ctx.settings, ctx.registry, written=flags.written, prompt=flags.text, problems=problems)
    if not opts.prompt:
        raise UserError("Say what to change, e.g. `/edit make it winter` as a reply to a picture.")
    source = await find_source(ctx, request)
    if source.init is None:
        raise UserError("`/edit` changes a picture: reply to one with `/edit <instruction>`, or attach one to it.")
    return await queue_instruct(ctx, request, source, opts, image_cfg)


async def queue_instruct(ctx: Context, request: Request, source: Source, opts: ImagineOptions, image_cfg: float) -> list[Reply]:
    """An Instruct Pix2Pix job on the picture of `source` (/edit, and the Edit again button)."""
    name = instruct_model_name(ctx)
    init = source.init
    assert init is not None

    def shape(spec: GenerationSpec, notes: list[str]) -> GenerationSpec:
        fields: dict[str, Any] = {
            "kind": "instruct",
            "model": name,
            "init_image": init.blob_key,
            "strength": None,
            "image_cfg": image_cfg,
            "operation": "Edit",
            "controls": (),
            "tile": False,
            "vae": None,
            "regions": None,
            "base_ratio": None,
            "clip_skip": None,
        }
        if opts.size is None and opts.ar is None:  # instruct models are SD 1.x-sized; tiny's is 64 px
            native = ctx.registry.default.native_size if name == TINY_PIX2PIX else 512
            fields |= dict(zip(("width", "height"), picture_size(init, native, ctx.settings, notes), strict=True))
        return spec.evolve(**fields)

    extra = ((init, source.upload_size),) if source.upload_size is not None else ()
    return await submit(ctx, request, opts, parent=source.parent, shape=shape, extra_blobs=extra)
