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

from commands.frame.context import Context
from commands.frame.declare import Option, read_flags, read_value
from commands.frame.errors import UserError
from commands.frame.numbers import check_number
from commands.frame.types import Reply, Request
from commands.jobs.options import IMAGINE_OPTIONS, ImagineOptions, fit_size, read_options
from commands.jobs.sources import Source, find_references, find_source
from commands.jobs.submit import submit
from generation.control.catalog import NEEDS, PREPROCESSORS, choose_controlnet, control_type, preprocessor_for
from generation.control.qr import QRTextError, make_code
from generation.models.families import FAMILIES, family
from generation.spec import CONTROL_TYPES, ControlRef, GenerationSpec

MAX_CONTROLS = 3  # ControlNet units in one job
MAX_CONTROL_WEIGHT = 2.0
MODES = {"balanced": "balanced", "prompt": "prompt", "my-prompt": "prompt", "control": "control", "controlnet": "control"}
WEIGHT = Option(
    "weight", "float", "How strongly the map steers", aliases=("control-weight", "cw"), bounds=(0, MAX_CONTROL_WEIGHT), default=1.0
)
START = Option("start", "float", "Fraction of the steps where the control starts", bounds=(0, 1), default=0.0)
END = Option("end", "float", "Fraction of the steps where it ends", bounds=(0, 1), default=1.0)
LOW = Option("low", "int", "Canny's low threshold", bounds=(0, 255), applies="/control canny")
HIGH = Option("high", "int", "Canny's high threshold", bounds=(0, 255), applies="/control canny")
CONTROL_OPTIONS: tuple[Option, ...] = (
    Option("type", "choice", "What the picture's map shows", choices=CONTROL_TYPES, positional=True, required=True),
    Option("text", "text", "qr: what the code says, e.g. a URL", positional=True, applies="/control qr"),
    Option("prompt", "text", "What to draw, and --options", positional=True, rest=True, required=True),
    Option("image", "file", "The picture whose structure steers the drawing (qr: none needed)"),
    WEIGHT,
    Option(
        "mode",
        "choice",
        "Which matters more: my prompt or the control",
        aliases=("control-mode",),
        choices=("balanced", "prompt", "control"),
        default="balanced",
    ),
    START,
    END,
    Option("control_model", "text", "A configured ControlNet (SDBOT_CONTROLNETS)", default="the first that fits", example="sd15-canny"),
    Option("pre", "text", "The preprocessor, or none when the picture is the map", aliases=("preprocessor",), example="none"),
    LOW,
    HIGH,
    Option("control", "text", "More controls from the same picture, TYPE:WEIGHT, e.g. depth:0.5", example="depth:0.5", repeatable=True),
    *(option for option in IMAGINE_OPTIONS if option.name not in ("strength", "tile", "draft")),
)
_UNIT = re.compile(r"^\s*([\w-]+)\s*(?::\s*([^\s,]+))?\s*$")


# --- /control -----------------------------------------------------------------------------------------


async def control_command(ctx: Context, request: Request, args: str) -> list[Reply]:
    flags = read_flags(request.options, args, CONTROL_OPTIONS)
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
    return await _queue_control(ctx, request, opts, source, type_, text, control_values, flags.written)


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
    raw: dict[str, Any],
    written: dict[str, str],
) -> list[Reply]:
    problems: list[str] = []
    weight = read_value(WEIGHT, raw, ctx.settings, problems, written)
    start = read_value(START, raw, ctx.settings, problems, written)
    end = read_value(END, raw, ctx.settings, problems, written)
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
        unit_weight, problem = check_number((match[2] if match else None) or "1", f"--control {item.strip()}", float, 0, MAX_CONTROL_WEIGHT)  # type: ignore[index]
        problems.extend([problem] if problem else [])
        units.append((extra, unit_weight if unit_weight is not None else 1.0, None))
    if len(units) > MAX_CONTROLS:
        problems.append(f"A job takes at most {MAX_CONTROLS} controls; this one has {len(units)}.")
    low = read_value(LOW, raw, ctx.settings, problems, written)
    high = read_value(HIGH, raw, ctx.settings, problems, written)
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
        why = family(model.family).why_not("controlnet")
        if why is not None:
            labels = [f.label for f in FAMILIES if f.controlnet is not None]
            takers = f"{', '.join(labels[:-1])} or {labels[-1]}"
            raise UserError(f"ControlNet can't be used with `{model.display_name}`: {why}. Pick a model of {takers} with `--model`.")
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
            multiple = family(model.family).size_multiple  # 16 for the transformer families
            fitted = fit_size(init.width, init.height, native * native, ctx.settings, multiple)
            size = dict(zip(("width", "height"), fitted, strict=True))
        return spec.evolve(controls=tuple(refs), control_mode=mode, **size)

    extra = ((init, source.upload_size),) if init is not None and source.upload_size is not None else ()
    references = await find_references(ctx, request, opts)  # --sref / --oref
    return await submit(ctx, request, opts, parent=source.parent, shape=shape, extra_blobs=extra, references=references)


def _configured(ctx: Context, setting: str) -> bool:
    return bool({"SDBOT_DEPTH_MODEL": ctx.settings.depth_model, "SDBOT_ANNOTATORS": ctx.settings.annotators}[setting])


# --- /edit ------------------------------------------------------------------------------------------------
