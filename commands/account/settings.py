"""/settings: your own defaults for every drawing (model, size, steps, CFG, sampler, negative prompt...),
and a default moodboard: the style reference of every drawing that names none (Midjourney's `--p`
personalization, for people who set one; `commands.jobs.sources.find_references`)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from commands.frame.context import Context
from commands.frame.declare import Option, read_flags
from commands.frame.errors import UserError
from commands.frame.types import Reply, Request
from commands.jobs.admission import asker
from commands.jobs.options import SETTINGS_FLAGS, SETTINGS_KEYS, drawing_options, read_options, user_options
from commands.jobs.sources import MOODBOARD as MOODBOARD_KIND
from storage import assets, users

SETTING_LABELS = {
    "model": "model",
    "size": "size",
    "ar": "aspect ratio",
    "steps": "steps",
    "cfg": "CFG scale",
    "sampler": "sampler",
    "no": "negative prompt",
    "n": "images per job",
    "vae": "VAE",
    "clip_skip": "clip skip",
    "moodboard": "moodboard",
}
MOODBOARD = Option(
    "moodboard",
    "text",
    "Your default moodboard: the style reference (--sref) of every drawing that names none; none: off",
    aliases=("p",),
    example="autumn",
)
OPTIONS: tuple[Option, ...] = (
    Option("reset", "text", "reset, or reset NAME: forget your defaults (all, or one)", positional=True, rest=True),
    *drawing_options(*SETTINGS_KEYS),
    MOODBOARD,
)


async def settings(ctx: Context, request: Request, args: str) -> list[Reply]:
    """`/settings` shows your defaults; `/settings --steps 30 --sampler euler_a` sets them;
    `/settings reset [name]` clears all or one."""
    words = args.split()
    flags = read_flags(request.options, args, OPTIONS)
    board = flags.values.pop("moodboard", None)
    async with ctx.db.transaction() as session:
        user = await asker(session, request)
        stored = dict(user.settings)
        if words and words[0].lower() == "reset":
            names = [{"p": "moodboard", **SETTINGS_FLAGS}.get(w.lower().lstrip("-"), w.lower()) for w in words[1:]]
            unknown = [n for n in names if n not in SETTING_LABELS]
            if unknown:
                raise UserError(f"I can't reset `{unknown[0]}`. Settings: {', '.join(SETTING_LABELS)}.")
            stored = {k: v for k, v in stored.items() if names and k not in names}
            await users.save_settings(session, user, stored)
            return [Reply("Your settings are reset.\n" + _describe(ctx, stored))]
        if board is not None:
            stored = await _set_moodboard(session, user.id, stored, str(board).strip())
        if flags.text or flags.values or flags.problems:
            if flags.text:
                flags.problems.insert(
                    0,
                    f"I don't understand `{flags.text}`. Set defaults with flags, e.g. "
                    "`/settings --steps 30 --sampler euler_a --ar 3:2`, or `/settings reset`.",
                )
            checked = read_options(flags.values, ctx.settings, ctx.registry, written=flags.written, problems=flags.problems)
            if "size" in flags.values:
                stored.pop("ar", None)
            if "ar" in flags.values:
                stored.pop("size", None)
            for key, raw in flags.values.items():
                canonical = {"no": "negative"}.get(key, key)
                value = getattr(checked, canonical)
                stored[key] = _stored_value(key, raw, value)
            await users.save_settings(session, user, stored)
            return [Reply("Saved.\n" + _describe(ctx, stored))]
        if board is not None:
            await users.save_settings(session, user, stored)
            return [Reply("Saved.\n" + _describe(ctx, stored))]
    return [Reply(_describe(ctx, stored))]


async def _set_moodboard(session: AsyncSession, user_id: int, stored: dict[str, object], name: str) -> dict[str, object]:
    """`stored` with the default moodboard set to `name` (one the person may use), or cleared by `none`."""
    if name.lower() in ("none", "off", ""):
        return {k: v for k, v in stored.items() if k != "moodboard"}
    board = await assets.find_usable(session, user_id, MOODBOARD_KIND, name)
    if board is None:
        raise UserError(f"You have no moodboard `{name.lower()}` (and none is shared by that name). `/moodboards` lists them.")
    return {**stored, "moodboard": board.name}


def _stored_value(key: str, raw: str, value: object) -> object:
    if key == "size" and isinstance(value, tuple):
        return f"{value[0]}x{value[1]}"
    if key == "ar":
        return raw.strip()
    return value


def _describe(ctx: Context, stored: dict[str, object]) -> str:
    s = ctx.settings
    opts = user_options(stored, s, ctx.registry)
    model = ctx.registry.get(opts.model) or ctx.registry.default
    native = model.native_size
    shown = {
        "model": opts.model or f"{ctx.registry.default.display_name} (default)",
        "size": (f"{opts.size[0]}x{opts.size[1]}" if opts.size else None)
        or (f"--ar {stored.get('ar')}" if opts.ar else f"{native}x{native} (the model's own)"),
        "steps": opts.steps or f"{s.steps_for(model)} (default)",
        "cfg": f"{opts.cfg:g}" if opts.cfg else f"{s.default_cfg:g} (default)",
        "sampler": opts.sampler or f"{s.default_sampler} (default)",
        "no": opts.negative or "(none)",
        "n": opts.n or f"{s.default_n} (default)",
        "vae": opts.vae or f"{model.vae or 'the model’s own'} (default)",
        "clip_skip": opts.clip_skip or f"{model.clip_skip or 1} (default)",
        "moodboard": f"{stored['moodboard']} (the style reference of drawings that name none)" if stored.get("moodboard") else "(none)",
    }
    lines = ["Your defaults:"] + [f"• {SETTING_LABELS[k]}: {v}" for k, v in shown.items()]
    lines.append("Change with e.g. `/settings --steps 30 --sampler euler_a --no blurry`; `/settings reset` clears.")
    return "\n".join(lines)
