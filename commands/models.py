"""/models and /model: the configured models, and choosing your default.

    /models          every model with its architecture (LoRAs and embeddings must match it)
    /model NAME      your default model (the same as `/settings --model NAME`)
    /model           which one is yours
"""

from __future__ import annotations

from commands.account import settings as settings_command
from commands.context import Context
from commands.errors import UserError
from commands.types import Reply, Request
from storage import users

FAMILIES = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL"}


async def list_models(ctx: Context, request: Request, args: str) -> list[Reply]:
    async with ctx.db.transaction() as session:
        user = await users.get_or_create(session, request.platform, request.user_id, request.user_name)
        yours = ctx.registry.get(user.settings.get("model")) or ctx.registry.default
    lines = ["Models (pick one with `/model NAME`, or `--model NAME` for one job):"]
    for entry in ctx.registry:
        marks = [m for m, on in (("default", entry is ctx.registry.default), ("yours", entry is yours)) if on]
        line = f"• {entry.display_name} — {FAMILIES.get(entry.family, entry.family)}, {entry.native_size}px native"
        if marks:
            line += f" ({', '.join(marks)})"
        if entry.description:
            line += f": {entry.description}"
        lines.append(line)
    return [Reply("\n".join(lines))]


async def choose_model(ctx: Context, request: Request, args: str) -> list[Reply]:
    name = args.strip()
    if not name:
        return await list_models(ctx, request, "")
    if ctx.registry.get(name) is None:
        raise UserError(f"Unknown model `{name}`. Models: {', '.join(ctx.registry.names())}.")
    return await settings_command(ctx, request, f"--model {name}")
