"""The "Imagine this" buttons under `/enhance` and `/describe` answers.

A candidate in a job's result is `{"prompt": ..., "negative": ..., "options": {...}}` (canonical
option names, checked again when pressed, against the limits of that day) or, for one of our own
pictures, `{"prompt": ..., "spec": {...}}`: that picture's job exactly, which draws it again pixel
for pixel.
"""

from __future__ import annotations

import re
from typing import Any

from commands import render
from commands.context import Context
from commands.errors import UserError
from commands.options import read_options
from commands.submit import queue_spec, submit
from commands.types import Reply, Request
from generation.prompts.lora_tags import parse_lora_tags
from generation.spec import GenerationSpec
from storage import assets, users
from storage.tables import Job


async def imagine_candidate(ctx: Context, request: Request, job: Job, index: int) -> list[Reply]:
    candidates = render.candidates_of(job)
    if not 0 <= index < len(candidates):
        raise UserError("That suggestion is gone. Run the command again.")
    candidate: dict[str, Any] = candidates[index]
    if candidate.get("spec"):
        spec = GenerationSpec.model_validate(candidate["spec"])  # its files are checked as it is queued
        return await queue_spec(ctx, request, spec, parent=(job.id, None), notes=["The same job again: model, seed and settings."])
    raw = dict(candidate.get("options") or {})
    if candidate.get("negative"):
        raw["no"] = candidate["negative"]
    prompt, notes = await _without_missing_loras(ctx, request, str(candidate["prompt"]))
    opts = read_options(raw, ctx.settings, ctx.registry, prompt=prompt)
    return await submit(ctx, request, opts, parent=(job.id, None), notes=notes)


async def _without_missing_loras(ctx: Context, request: Request, prompt: str) -> tuple[str, list[str]]:
    """A prompt read from someone's picture names LoRAs the presser may not have (Civitai
    prompts mostly do): draw without those, as A1111 does with a missing LoRA, and say so. A
    prompt the user types themselves is refused instead (`commands.asset_use`)."""
    try:
        tagged = parse_lora_tags(prompt)
    except ValueError:
        return prompt, []
    missing = []
    async with ctx.db.transaction() as session:
        user = await users.get_or_create(session, request.platform, request.user_id, request.user_name)
        for name, _ in tagged:
            if await assets.find_usable(session, user.id, "lora", name) is None:
                missing.append(name)
    for name in missing:
        prompt = re.sub(rf"<(?:lora|lyco):{re.escape(name)}(?::[^>]*)?>", "", prompt, flags=re.IGNORECASE)
    if not missing:
        return prompt, []
    names = ", ".join(f"`{name}`" for name in missing)
    return prompt.strip(), [f"Drawn without the LoRA {names}: you have none of that name (`/lora upload`)."]
