"""`--draft` (Midjourney's draft mode) and the Enhance button under a draft.

A draft is the prompt drawn the cheap way: at half the size (each side, in the family's size
multiples, no side under SDBOT_MIN_SIDE), by the model family's fast path
(`generation.models.families.base.DraftPath`: its steps, guidance and sampler) with what the
operator names for that family in SDBOT_DRAFT — a few-step LoRA file on the same model (LCM-LoRA,
DMD2; Qwen-Image-Lightning) or a distilled model of the same family in the registry
(FLUX.1-schnell, Z-Image Turbo, ...). Where nothing is configured, or what is configured can't
serve this model, the draft is a third of the model's own steps at half the size, and the reply
says so and why: a draft is never passed off as a distilled one.

The draft's spec keeps what the picture would have been without `--draft` (`GenerationSpec.draft`:
model, size, steps, guidance, sampler), so Enhance draws picture i exactly as `/imagine` with that
picture's seed would have: the same prompt (its wildcard picks), seed, LoRAs and options, in full.
It is queued with `queue_spec`, like "Imagine this": the presser's rights to the job's LoRAs are
checked again (`commands.jobs.model_fit.require_usable`), and the family's and the chat's rules.

The draft LoRA is the operator's file, not a user's asset: it is read as safetensors only (the
upload checker, `generation.assets.files.inspect_asset`), checked against the model's layers,
copied once into the blob store (content-addressed, so every worker reads it like an uploaded
LoRA) and applied by the same adapter code as users' LoRAs (`GenerationSpec.drawn_loras`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from commands.frame.context import Context
from commands.frame.errors import UserError
from commands.frame.offload import offload
from commands.frame.types import Reply, Request
from commands.jobs import job_view
from commands.jobs.model_fit import fit_problem
from commands.jobs.options import ImagineOptions
from commands.jobs.prompt_features import Picked
from commands.jobs.sources import Source
from commands.jobs.submit import queue_spec, submit
from generation.assets.files import AssetError, AssetInfo, inspect_asset
from generation.assets.safetensors_header import addnet_hash
from generation.models.families import Family, family
from generation.models.families.base import plain_steps
from generation.spec import AssetRef, DraftRef, GenerationSpec
from storage.tables import Job

log = logging.getLogger(__name__)

MAX_DRAFT_LORA_BYTES = 4 * 1024**3  # the largest draft LoRA read (Qwen-Image-Lightning in bf16 is ~1.7 GB)


@dataclass(frozen=True)
class DraftLora:
    """A configured draft LoRA as read: the ref a job carries and what the file is, or why it
    can't be used (a message naming the file)."""

    ref: AssetRef | None = None
    info: AssetInfo | None = None
    problem: str | None = None


# Files read so far, by (path, size, mtime): a draft LoRA is read and hashed once per process.
_READ: dict[tuple[str, int, int], tuple[AssetRef, AssetInfo]] = {}


def read_draft_lora(ctx: Context, path: str) -> DraftLora:
    """The draft LoRA at `path`, checked as an upload is (safetensors only, a LoRA's layout) and
    put into the blob store. Blocking: run it off the event loop."""
    file = Path(path).expanduser()
    try:
        stat = file.stat()
        key = (str(file), stat.st_size, stat.st_mtime_ns)
        known = _READ.get(key)
        if known is not None and ctx.blobs.exists(known[0].blob):
            return DraftLora(*known)
        if stat.st_size > MAX_DRAFT_LORA_BYTES:
            return DraftLora(problem=f"`{file.name}` is larger than a LoRA ({stat.st_size / 1024**3:.1f} GB)")
        data = file.read_bytes()
        info = inspect_asset(data, file.name, kind="lora", max_bytes=MAX_DRAFT_LORA_BYTES)
        blob = ctx.blobs.put(data, "st")
    except OSError as error:
        return DraftLora(problem=f"`{file.name}` can't be read ({error.strerror or type(error).__name__})")
    except AssetError as error:
        return DraftLora(problem=str(error))
    ref = AssetRef(name=file.stem, blob=blob, sha256=info.sha256, format=info.format, short_hash=addnet_hash(data)[:12])
    _READ[key] = (ref, info)
    log.info("draft LoRA %s read: %s", file, info.summary())
    return DraftLora(ref, info)


async def draft_loras(ctx: Context) -> dict[str, DraftLora]:
    """Every configured draft LoRA, by family id, read off the event loop (once per process)."""
    found = {}
    for family_id, what in ctx.settings.draft.items():
        path = family(family_id).draft
        if path is not None and path.source == "lora":
            found[family_id] = await offload(read_draft_lora, ctx, what)
    return found


def half_size(width: int, height: int, multiple: int, min_side: int) -> tuple[int, int]:
    """Half of each side in multiples of `multiple` (the family's size rule), no side under
    `min_side` (rounded up to a multiple) nor over the side it halves."""
    smallest = math.ceil(min_side / multiple) * multiple

    def half(side: int) -> int:
        return min(side, max(smallest, round(side / 2 / multiple) * multiple))

    return half(width), half(height)


def make_draft(ctx: Context, spec: GenerationSpec, notes: list[str], loras: dict[str, DraftLora]) -> GenerationSpec:
    """`spec` (the picture in full, as built from the request) as its draft: half the size, the
    family's fast path where one is configured and serves this model, else a third of the steps;
    a note says which, and why not the fast path."""
    if not spec.prompt:
        raise UserError("Tell me what to draw, e.g. `/imagine a red fox in the snow --draft`.")
    entry = ctx.registry.get(spec.model) or ctx.registry.default
    kind = family(entry.family)
    width, height = half_size(spec.width, spec.height, kind.size_multiple, ctx.settings.min_side)
    how, name, lora, model, reason = _fast_path(ctx, kind, entry.display_name, entry.guessed_variant, loras)
    path = kind.draft
    if how != "steps" and path is not None:
        steps, cfg, sampler = path.steps, path.cfg, path.sampler
    else:
        steps, cfg, sampler = plain_steps(spec.steps, kind.min_steps), spec.cfg, spec.sampler
    # Guidance off (a distilled draft's CFG): a negative prompt could do nothing, so the draft leaves
    # it out, and Enhance puts it back.
    off_at = kind.cfg_off_at if kind.cfg_off_at is not None else 1.0
    dropped = spec.negative_prompt if spec.negative_prompt.strip() and how != "steps" and cfg <= off_at else None
    draft = DraftRef(
        how=how,
        name=name,
        lora=lora,
        model=spec.model,
        width=spec.width,
        height=spec.height,
        steps=spec.steps,
        cfg=spec.cfg,
        sampler=spec.sampler,
        negative_prompt=dropped,
    )
    size = f"{width}x{height}"
    if (width * 2, height * 2) != (spec.width, spec.height):
        size += f" (about half of {spec.width}x{spec.height}; no side under {ctx.settings.min_side} px here)"
    if how == "lora":
        notes.append(f"Draft: {steps} steps with the fast LoRA `{name}` at {size}; Enhance draws it in full.")
    elif how == "model":
        notes.append(f"Draft: {steps} steps of `{model}` at {size}; Enhance draws it with `{spec.model}` in full.")
    else:
        notes.append(
            f"Draft: {steps} of {spec.steps} steps at {size} on `{spec.model}` itself, because {reason}: rougher than a "
            "distilled draft. Enhance draws it in full."
        )
    if dropped is not None:
        notes.append("The draft draws without guidance, so your negative prompt counts in Enhance only.")
    return spec.evolve(
        model=model,
        width=width,
        height=height,
        steps=steps,
        cfg=cfg,
        sampler=sampler,
        negative_prompt="" if dropped is not None else spec.negative_prompt,
        draft=draft,
    )


def _fast_path(
    ctx: Context, kind: Family, model: str, variant: str | None, loras: dict[str, DraftLora]
) -> tuple[str, str, AssetRef | None, str, str]:
    """How this model's draft is drawn: (how, name, LoRA, model to draw with, why not the fast path)."""
    path = kind.draft
    if path is None:
        return "steps", "", None, model, f"{kind.label} has no distilled fast path here"
    configured = ctx.settings.draft.get(kind.id)
    if configured is None:
        return "steps", "", None, model, f"no fast path is set up for {kind.label} (an admin can name {path.what} in SDBOT_DRAFT)"
    if path.source == "lora":
        read = loras.get(kind.id) or DraftLora(problem="it was not read")
        why_not = kind.why_not("lora", variant)
        if read.problem is not None or read.ref is None or read.info is None:
            return "steps", "", None, model, f"the draft LoRA for {kind.label} can't be used: {read.problem}"
        if why_not is not None:
            return "steps", "", None, model, f"`{model}` takes no LoRAs ({why_not})"
        entry = ctx.registry.get(model)
        misfit = fit_problem(read.info, entry) if entry is not None else None
        if misfit is not None:
            return "steps", "", None, model, f"the draft LoRA `{read.ref.name}` doesn't fit `{model}`: {misfit}"
        return "lora", read.ref.name, read.ref, model, ""
    draft_model = ctx.registry.get(configured)
    if draft_model is None:
        return "steps", "", None, model, f"the draft model `{configured}` set for {kind.label} isn't one of the models here"
    if draft_model.family != kind.id:
        return "steps", "", None, model, f"the draft model `{draft_model.display_name}` is {draft_model.family_label}, not {kind.label}"
    return "model", draft_model.display_name, None, draft_model.display_name, ""


async def submit_draft(
    ctx: Context,
    request: Request,
    opts: ImagineOptions,
    *,
    source: Source | None = None,
    base: GenerationSpec | None = None,
    parent: tuple[int, int | None] | None = None,
    references: Sequence[Picked] = (),
) -> list[Reply]:
    """Queue `opts` (/imagine's checked options) as a draft; refused with a picture to start from
    (a draft is drawn from the prompt: Enhance could not keep the picture)."""
    if source is not None and source.init is not None:
        raise UserError(
            "`--draft` draws from a prompt alone, not from a picture. Leave out `--draft` to remix the picture; "
            "under a draft, Enhance draws it in full."
        )
    loras = await draft_loras(ctx)
    return await submit(
        ctx,
        request,
        opts,
        base=base,
        parent=parent,
        references=references,
        shape=lambda spec, notes: make_draft(ctx, spec, notes, loras),
    )


async def reroll(ctx: Context, request: Request, job: Job) -> list[Reply]:
    """Reroll under a draft: another draft of the same request with a new seed."""
    spec = job_view.spec_of(job)
    assert spec.draft is not None
    opts = ImagineOptions(size=(spec.draft.width, spec.draft.height), draft=True)
    return await submit_draft(ctx, request, opts, base=spec, parent=(job.id, None))


def enhanced_spec(spec: GenerationSpec, index: int, job_id: int) -> GenerationSpec:
    """Picture `index` of the draft `spec` as the picture in full: its seed and prompt (wildcard
    picks included), the model, size, steps, guidance, sampler and negative prompt the job would
    have had without `--draft`, everything else as the job had it."""
    draft = spec.draft
    assert draft is not None
    if draft.negative_prompt is not None:
        spec = spec.evolve(negative_prompt=draft.negative_prompt)
    return spec.image_spec(index).evolve(
        model=draft.model,
        width=draft.width,
        height=draft.height,
        steps=draft.steps,
        cfg=draft.cfg,
        sampler=draft.sampler,
        draft=None,
        enhanced_from=job_id,
    )


async def enhance(ctx: Context, request: Request, job: Job, index: int) -> list[Reply]:
    """The Enhance button: draft picture `index` drawn in full, as a job of whoever pressed."""
    spec = job_view.spec_of(job)
    if spec.draft is None:
        raise UserError("Only a draft has an Enhance button: this picture is drawn in full already.")
    if not 0 <= index < len(job.outputs):
        raise UserError(f"Job {job.id} has no picture {index + 1}.")
    full = enhanced_spec(spec, index, job.id)
    note = f"Enhancing picture {index + 1} of draft job {job.id}: seed {full.seed}, the same prompt, in full."
    return await queue_spec(ctx, request, full, parent=(job.id, index), notes=[note])
