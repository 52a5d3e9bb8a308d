"""/compare: A1111's X/Y/Z plot. One prompt drawn over up to three axes of settings, as one
labelled grid plus each cell as a picture of its own (U-buttons under the grid).

    /compare a red fox --x steps=10,20,30 --y cfg=4,7
    /compare a fox and an owl --x prompt=fox,cat,dog --y lora=foxy:0,0.5,1 --seed 42

An axis is `NAME=V1,V2,...` (values with commas go in double quotes) over one of:

    steps, cfg, sampler, seed, model, strength (with a picture to start from)
    lora=NAME:W1,W2,...   the weight of one of your LoRAs (your other `--lora`s stay as given)
    prompt=SEARCH,R1,...  A1111's Prompt S/R: SEARCH must be in the prompt; each value replaces
                          it (the first cell keeps it), in the negative prompt too

Cells are x fastest, then y, then z. Each cell is checked and made exactly as `/imagine` with
those settings would make its job (the same checks, defaults, LoRA rights, this chat's rules),
so a cell's pixels are what that job draws alone; the comparison queues ONE job holding them
(generation.spec.CompareSpec), whose worker draws them (cells that can share a pipeline call do)
and the labelled grid (generation.jobs.compare). At most SDBOT_MAX_COMPARE_CELLS cells; every
bad value is answered before anything is queued.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from commands.frame.context import Context
from commands.frame.declare import Option, read_flags
from commands.frame.errors import UserError
from commands.frame.numbers import quoted
from commands.frame.types import Reply, Request
from commands.jobs.options import IMAGINE_OPTIONS, ImagineOptions, read_options
from commands.jobs.sources import Source, find_references, find_source, takes_request_picture
from commands.jobs.submit import submit_many
from generation.models.samplers import find_sampler
from generation.spec import CompareAxis, CompareSpec, GenerationSpec

# What an axis may change: its title on the grid, and the drawing option it sets.
AXES: dict[str, str] = {
    "steps": "Steps",
    "cfg": "CFG",
    "sampler": "Sampler",
    "seed": "Seed",
    "model": "Model",
    "lora": "LoRA",
    "strength": "Strength",
    "prompt": "Prompt S/R",
}
LETTERS = ("x", "y", "z")
AXIS_HELP = "NAME=values: steps, cfg, sampler, seed, model, strength, lora=NAME:W1,W2 or prompt=SEARCH,R1 (replaces SEARCH)"
PROMPT = Option("prompt", "text", "What to draw (--options work here too)", positional=True, rest=True, required=True)
IMAGE = Option("image", "file", "Start from this picture (img2img; needed for a strength axis)")
AXIS_OPTIONS: tuple[Option, ...] = (
    Option("x", "text", f"The x axis (across): {AXIS_HELP}", example="steps=10,20,30"),
    Option("y", "text", "The y axis (down), written as --x", example="cfg=4,7"),
    Option("z", "text", "The z axis (one grid per value, side by side), written as --x", example="sampler=euler_a,ddim"),
)
# The drawing options of /imagine, but for what a comparison can't be: a batch (each cell is one
# picture), a draft, chaos (a cell is one job drawn alone) and repeats.
OPTIONS: tuple[Option, ...] = (
    PROMPT,
    IMAGE,
    *AXIS_OPTIONS,
    *(option for option in IMAGINE_OPTIONS if option.name not in ("n", "chaos", "draft")),
)


@dataclass(frozen=True)
class Axis:
    letter: str  # x, y or z
    name: str  # a key of AXES
    title: str  # as the grid labels it
    values: tuple[str, ...]  # as written (the grid's labels)
    written: str  # how the person wrote it, for messages: `--x steps`
    lora: str = ""  # the LoRA a lora axis weighs


async def compare_command(ctx: Context, request: Request, args: str) -> list[Reply]:
    """/compare PROMPT --x NAME=values [--y ...] [--z ...] [drawing options]."""
    flags = read_flags(request.options, args, OPTIONS)
    problems = list(flags.problems)
    axes = [
        _axis(letter, flags.values.pop(letter), flags.written.get(letter, f"--{letter}"), problems)
        for letter in LETTERS
        if flags.values.get(letter) is not None
    ]
    axes = [axis for axis in axes if axis is not None]
    if not axes and not problems:
        problems.append("Give at least one axis, e.g. `/compare a red fox --x steps=10,20,30 --y cfg=4,7`.")
    if problems:
        raise UserError(*problems)
    _check_axes(axes, flags.values, flags.text, ctx.settings.max_compare_cells)
    options = _cells(ctx, axes, flags.values, flags.written, flags.text)
    first = options[0]
    references = await find_references(ctx, request, first)
    source = Source() if takes_request_picture(first) else await find_source(ctx, request)
    plot_axes = tuple(CompareAxis(name=axis.name, title=axis.title, values=_labels(ctx, axis)) for axis in axes)
    batch = min(ctx.settings.max_batch_jobs, ctx.settings.max_batch_images)

    def combine(cells: list[GenerationSpec], notes: list[str]) -> GenerationSpec:
        plot = CompareSpec(axes=plot_axes, cells=tuple(cells), batch=batch)
        return cells[0].evolve(kind="compare", compare=plot, n=len(cells), draft=None, detail=None, chaos=0)

    return await submit_many(
        ctx,
        request,
        options,
        combine=combine,
        init=source.init,
        upload_size=source.upload_size,
        base=source.base,
        parent=source.parent,
        references=references,
    )


def _axis(letter: str, raw: Any, flag: str, problems: list[str]) -> Axis | None:
    """`NAME=V1,V2,...` read, or None with the problem recorded."""
    text = str(raw).strip()
    name, sign, rest = text.partition("=")
    name = name.strip().lower().replace("-", "_")
    if not sign or name not in AXES:
        problems.append(
            f"`{flag}` is `NAME=values` with NAME one of {', '.join(AXES)}, e.g. `{flag} steps=10,20,30`; you wrote `{quoted(text)}`."
        )
        return None
    written = f"{flag} {name}"
    lora = ""
    title = AXES[name]
    if name == "lora":
        lora, colon, rest = rest.partition(":")
        lora = lora.strip().lower()
        if not colon or not lora:
            problems.append(f"`{written}` is `lora=NAME:W1,W2,...`, e.g. `{flag} lora=foxy:0,0.5,1`.")
            return None
        title = f"LoRA {lora}"
    values = _values(rest)
    if not values:
        problems.append(f"`{written}` needs values, e.g. `{flag} {name}={'foxy:0,0.5,1' if name == 'lora' else '10,20,30'}`.")
        return None
    return Axis(letter, name, title, values, written, lora)


def _labels(ctx: Context, axis: Axis) -> tuple[str, ...]:
    """The axis's values as the grid labels them: samplers and models by their own names
    (`euler_a` is `Euler a`); the rest as written. The values are already checked."""
    if axis.name == "sampler":
        return tuple(found.name if (found := find_sampler(value)) is not None else value for value in axis.values)
    if axis.name == "model":
        return tuple(entry.display_name if (entry := ctx.registry.get(value)) is not None else value for value in axis.values)
    return axis.values


def _values(text: str) -> tuple[str, ...]:
    """Comma-separated values; a value in double quotes may hold commas (as A1111's plot reads them)."""
    row = next(csv.reader([text], skipinitialspace=True), [])
    return tuple(value.strip() for value in row if value.strip())


def _check_axes(axes: list[Axis], values: Mapping[str, Any], prompt: str, max_cells: int) -> None:
    """Problems of the axes as a whole, before any cell is made: the same thing twice, an axis
    and an option that set the same thing, too many cells, a search term not in the prompt."""
    problems = []
    names = [axis.name for axis in axes]
    for name in dict.fromkeys(names):
        if names.count(name) > 1 and name != "lora":
            problems.append(f"Two axes both change {AXES[name].lower()}: keep one.")
    loras = [axis.lora for axis in axes if axis.name == "lora"]
    if len(loras) != len(set(loras)):
        problems.append("Two axes weigh the same LoRA: keep one.")
    for axis in axes:
        if axis.name not in ("lora", "prompt") and values.get(axis.name) is not None:
            problems.append(f"`--{axis.name}` and `{axis.written}` both set {AXES[axis.name].lower()}: keep one.")
        if axis.name == "lora":
            given = {part.partition(":")[0].strip().lower() for part in str(values.get("lora") or "").split(",")}
            if axis.lora in given:
                problems.append(f"`--lora` and `{axis.written}` both weigh `{axis.lora}`: keep the axis.")
            if f"<lora:{axis.lora}:" in prompt.lower() or f"<lora:{axis.lora}>" in prompt.lower():
                problems.append(f"Take `<lora:{axis.lora}:…>` out of the prompt: `{axis.written}` sets its weight.")
        if axis.name == "prompt" and axis.values[0] not in prompt:
            problems.append(
                f"`{axis.written}`: the first value is what each value replaces, and `{quoted(axis.values[0])}` is not in the prompt. "
                f"Start with a word of the prompt, e.g. `{axis.written.split()[0]} prompt={quoted(prompt.split()[-1] if prompt.split() else 'fox')},cat`."
            )
    cells = math.prod(len(axis.values) for axis in axes)
    if cells > max_cells:
        problems.append(f"That is {cells} cells; a comparison has at most {max_cells} (SDBOT_MAX_COMPARE_CELLS). Use fewer values.")
    elif cells < 2:
        problems.append("A comparison needs at least two cells: give an axis two values or more.")
    if problems:
        raise UserError(*problems)


def _cells(ctx: Context, axes: list[Axis], values: Mapping[str, Any], written: Mapping[str, str], prompt: str) -> list[ImagineOptions]:
    """Each cell's options, x fastest, checked as /imagine checks them; every problem of every
    cell in one reply (each once)."""
    options: list[ImagineOptions] = []
    problems: list[str] = []
    shape = [len(axis.values) for axis in axes]
    for number in range(math.prod(shape)):
        raw = dict(values)
        names = dict(written)
        text = prompt
        rest = number
        for axis, size in zip(axes, shape, strict=True):
            value = axis.values[rest % size]
            rest //= size
            if axis.name == "prompt":
                text = text.replace(axis.values[0], value)
                if raw.get("no") is not None:
                    raw["no"] = str(raw["no"]).replace(axis.values[0], value)
            elif axis.name == "lora":
                others = str(raw.get("lora") or "").strip()
                raw["lora"] = f"{others}, {axis.lora}:{value}" if others else f"{axis.lora}:{value}"
                names["lora"] = axis.written
            else:
                raw[axis.name] = value
                names[axis.name] = axis.written
        try:
            options.append(read_options(raw, ctx.settings, ctx.registry, written=names, prompt=text))
        except UserError as error:
            problems.extend(problem for problem in error.problems if problem not in problems)
    if problems:
        raise UserError(*problems)
    return options
