"""The "Imagine this" buttons under `/enhance` and `/describe` answers.

A candidate in a job's result is `{"prompt": ..., "negative": ..., "options": {...}}` (canonical
option names, checked again when pressed, against the limits of that day) or, for one of our own
pictures, `{"prompt": ..., "spec": {...}}`: that picture's job exactly, which draws it again pixel
for pixel.
"""

from __future__ import annotations

from typing import Any

from commands import render
from commands.context import Context
from commands.errors import UserError
from commands.options import read_options
from commands.submit import queue_spec, submit
from commands.types import Reply, Request
from generation.spec import GenerationSpec
from storage.tables import Job


async def imagine_candidate(ctx: Context, request: Request, job: Job, index: int) -> list[Reply]:
    candidates = render.candidates_of(job)
    if not 0 <= index < len(candidates):
        raise UserError("That suggestion is gone. Run the command again.")
    candidate: dict[str, Any] = candidates[index]
    if candidate.get("spec"):
        spec = GenerationSpec.model_validate(candidate["spec"])
        return await queue_spec(ctx, request, spec, parent=(job.id, None), notes=["The same job again: model, seed and settings."])
    raw = dict(candidate.get("options") or {})
    if candidate.get("negative"):
        raw["no"] = candidate["negative"]
    opts = read_options(raw, ctx.settings, ctx.registry, prompt=str(candidate["prompt"]))
    return await submit(ctx, request, opts, parent=(job.id, None))
