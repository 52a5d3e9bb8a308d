"""The "Imagine this" buttons under `/enhance` and `/describe` answers.

A candidate in a job's result is `{"prompt": ..., "negative": ..., "options": {...}}` (canonical
option names, checked again when pressed, against the limits of that day) or, for one of our own
pictures, `{"prompt": ..., "spec": {...}}`: that picture's job exactly, which draws it again pixel
for pixel.
"""

from __future__ import annotations

import dataclasses
import re

from commands.frame.context import Context
from commands.frame.errors import UserError
from commands.frame.types import Reply, Request
from commands.jobs import job_view
from commands.jobs.admission import asker
from commands.jobs.options import ImagineOptions, read_options
from commands.jobs.submit import queue_spec, submit
from generation.prompts.lora_tags import parse_lora_tags
from generation.spec import GenerationSpec
from storage import assets
from storage.tables import Job


async def imagine_candidate(ctx: Context, request: Request, job: Job, index: int) -> list[Reply]:
    candidates = job_view.candidates_of(job)
    if not 0 <= index < len(candidates):
        raise UserError("That suggestion is gone. Run the command again.")
    candidate = candidates[index]
    if candidate.spec:
        spec = GenerationSpec.model_validate(candidate.spec)  # its files are checked as it is queued
        return await queue_spec(ctx, request, spec, parent=(job.id, None), notes=["The same job again: model, seed and settings."])
    raw = dict(candidate.options)
    if candidate.negative:
        raw["no"] = candidate.negative
    prompt, notes = await _without_missing_loras(ctx, request, candidate.prompt)
    read = read_options(raw, ctx.settings, ctx.registry, prompt=prompt)
    # The picture's model, size and seed as asked; its sampler, guidance and the like as what the
    # picture had, which give way (with a note) where this model's family can't use them.
    opts = ImagineOptions(prompt=read.prompt, model=read.model, size=read.size, ar=read.ar, seed=read.seed, n=read.n)
    if read.detail:  # ADetailer's pass, as the picture had it (its prompt and strength only with its targets)
        opts = dataclasses.replace(opts, detail=read.detail, detail_prompt=read.detail_prompt, detail_strength=read.detail_strength)
    return await submit(ctx, request, opts, parent=(job.id, None), notes=notes, inherited=read)


async def _without_missing_loras(ctx: Context, request: Request, prompt: str) -> tuple[str, list[str]]:
    """A prompt read from someone's picture names LoRAs the presser may not have (Civitai
    prompts mostly do): draw without those, as A1111 does with a missing LoRA, and say so. A
    prompt the user types themselves is refused instead (`commands.jobs.model_fit`)."""
    try:
        tagged = parse_lora_tags(prompt)
    except ValueError:
        return prompt, []
    missing = []
    async with ctx.db.transaction() as session:
        user = await asker(session, request)
        for name, _ in tagged:
            if await assets.find_usable(session, user.id, "lora", name) is None:
                missing.append(name)
    for name in missing:
        prompt = re.sub(rf"<(?:lora|lyco):{re.escape(name)}(?::[^>]*)?>", "", prompt, flags=re.IGNORECASE)
    if not missing:
        return prompt, []
    names = ", ".join(f"`{name}`" for name in missing)
    return prompt.strip(), [f"Drawn without the LoRA {names}: you have none of that name (`/lora upload`)."]
