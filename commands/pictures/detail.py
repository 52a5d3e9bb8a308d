"""The Detail button under every single picture, and /detail: ADetailer's pass on a picture that
exists (faces, hands or people found and repainted at the model's native size, pasted back
feathered: generation.jobs.detail). `--detail` on /imagine asks for the same pass as part of
the drawing; its options are the drawing options' (`commands.jobs.options`: DETAIL, DETAIL_PROMPT,
DETAIL_STRENGTH), and every bad value is answered here, before anything is queued.

Both queue a job of kind `detail` through `commands.pictures.edits.queue_edit`, with the
picture's job as its base: the same model, prompt, negative prompt, steps, sampler and LoRAs
(resolved again with the rights of whoever presses, as every edit's are), and the picture's own
`--detail` targets, prompt and strength when it had them (else faces, at ADetailer's 0.4).
"""

from __future__ import annotations

import dataclasses

from commands.frame.context import Context
from commands.frame.declare import Option, read_flags
from commands.frame.errors import UserError
from commands.frame.types import Reply, Request
from commands.jobs import job_view
from commands.jobs.options import (
    DETAIL_PROMPT,
    DETAIL_STRENGTH,
    DETAIL_WORDS,
    ImagineOptions,
    InitImage,
    detail_spec,
    drawing_options,
    read_options,
)
from commands.jobs.sources import Source, find_source
from commands.pictures.edits import IMAGE, Edit, queue_edit
from generation.spec import DetailSpec, GenerationSpec
from storage.tables import Job

DEFAULT_TARGETS = ("face",)  # ADetailer's first model is a face model
LABEL = "Detail"
OPTIONS: tuple[Option, ...] = (
    Option(
        "what",
        "text",
        "What to detail: face, hand or person (several with commas), then a prompt for it if you like",
        default="the picture's --detail, else face",
        positional=True,
        rest=True,
    ),
    IMAGE,
    DETAIL_PROMPT,
    DETAIL_STRENGTH,
    *drawing_options("no", "seed", "steps", "cfg", "sampler", "model"),
)


def detail_edit(opts: ImagineOptions, inherited: DetailSpec | None) -> Edit:
    """The Detail edit: the pass the options ask for, filling in what they leave out from the
    picture's own (`inherited`), else ADetailer's defaults. The targets and their prompt and
    strength travel in the job's `detail`; the rest of `opts` tunes the diffusion as any edit's."""
    if inherited is not None:
        opts = dataclasses.replace(
            opts,
            detail_prompt=opts.detail_prompt if opts.detail_prompt is not None else inherited.prompt,
            detail_strength=opts.detail_strength if opts.detail_strength is not None else inherited.strength,
        )
    wanted = detail_spec(opts, inherited.targets if inherited is not None else DEFAULT_TARGETS)
    assert wanted is not None  # there are always default targets

    def shape(ctx: Context, spec: GenerationSpec, init: InitImage, notes: list[str]) -> dict[str, object]:
        if "hand" in wanted.targets and not ctx.settings.hand_detector:  # a picture's own `--detail hand`, since unset
            raise UserError("This picture's details include hands, and no hand detector is configured any more (SDBOT_HAND_DETECTOR).")
        return {"detail": wanted, "width": init.width, "height": init.height, "strength": None}

    drawing = dataclasses.replace(opts, detail=None, detail_prompt=None, detail_strength=None)  # the pass is `wanted`
    return Edit("detail", LABEL, drawing, shape)


def kept(opts: ImagineOptions, spec: GenerationSpec) -> ImagineOptions:
    """`opts` for drawing `spec` again (Reroll, V1..Vn) with its ADetailer pass, as it was asked."""
    if spec.detail is None or spec.kind == "detail":  # a Detail job's reroll repeats its own spec
        return opts
    wanted = spec.detail
    return dataclasses.replace(opts, detail=wanted.targets, detail_prompt=wanted.prompt, detail_strength=wanted.strength)


async def press(ctx: Context, request: Request, job: Job, index: int) -> list[Reply]:
    """The Detail button under picture `index` of `job`."""
    output = job.outputs[index]
    base = job_view.image_base(job, index)
    source = Source(init=InitImage(output.blob_key, output.width, output.height), base=base, parent=(job.id, index))
    return await queue_edit(ctx, request, source, detail_edit(ImagineOptions(), base.detail))


async def detail_command(ctx: Context, request: Request, args: str) -> list[Reply]:
    """/detail [face|hand|person,…] [prompt]: as a reply to a picture, or with one attached."""
    flags = read_flags(request.options, args, OPTIONS)
    targets, prompt = split_targets(flags.text)
    raw: dict[str, object] = dict(flags.values)
    if targets:
        raw["detail"] = targets
    if prompt:
        if raw.get("detail_prompt"):
            flags.problems.append("Give the detail prompt once: after the targets, or with `--detail-prompt`.")
        raw["detail_prompt"] = prompt
    opts = read_options(raw, ctx.settings, ctx.registry, written=flags.written, problems=flags.problems)
    source = await find_source(ctx, request)
    inherited = source.base.detail if source.base is not None else None
    return await queue_edit(ctx, request, source, detail_edit(opts, inherited))


def split_targets(text: str) -> tuple[str, str]:
    """`face,hand a smiling face` -> (`face,hand`, `a smiling face`): the leading words that name
    targets, then the prompt."""
    words = text.split()
    count = 0
    while count < len(words) and all(part in DETAIL_WORDS for part in words[count].lower().split(",") if part):
        count += 1
    return ",".join(words[:count]), " ".join(words[count:])
