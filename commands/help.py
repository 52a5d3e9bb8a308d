"""/help: the command reference, with this installation's limits, samplers and models."""

from __future__ import annotations

from commands import render
from commands.context import Context
from commands.types import Reply, Request
from generation.samplers import sampler_names


# What each command does in a few words, for the platforms' command menus (Telegram's
# setMyCommands, Discord's slash command descriptions). Order: how often people need them.
COMMAND_MENU: tuple[tuple[str, str], ...] = (
    ("imagine", "Draw a picture: /imagine a red fox --ar 3:2"),
    ("help", "Commands, options and limits"),
    ("settings", "Your defaults: /settings --steps 30"),
    ("queue", "Your jobs and the queue"),
    ("cancel", "Cancel a job: /cancel [job|all]"),
    ("history", "Your recent jobs"),
    ("info", "A job's parameters: /info <job>"),
)


def help_text(ctx: Context) -> str:
    s = ctx.settings
    models = ", ".join(
        f"{entry.display_name}{' (default)' if entry is ctx.registry.default else ''}" for entry in ctx.registry
    )
    lines = [
        "**Commands**",
        "/imagine <prompt> [options] — draw. Attach an image (or reply to one) to start from it.",
        "Reply to one of my pictures with text to remix it with that prompt.",
        "Buttons: U1…U4 show image i alone · V1…V4 vary image i · Reroll draws again with a new seed.",
        "/settings — show your defaults; `/settings --steps 30 --sampler euler_a` sets them; `/settings reset`.",
        "/queue — your jobs and the queue · /cancel [job|all] · /history [n] · /info <job> (or reply /info)",
        "",
        "**Options for /imagine**",
        "--no <words> — negative prompt (what to leave out)",
        f"--ar W:H — aspect ratio, 1:4 to 4:1 · --size WxH — multiples of 8, sides {s.min_side}–{s.max_side}, "
        f"at most {s.max_pixels:,} pixels",
        f"--steps 1–{s.max_steps} (default {s.default_steps}) · --cfg {s.min_cfg:g}–{s.max_cfg:g} "
        f"(default {s.default_cfg:g}) · --n 1–{s.max_batch} images (default {s.default_n})",
        "--seed 0–4294967295 (-1 = random; image i of a batch uses seed + i)",
        f"--strength 0.01–1 — how much an init image changes (default {s.default_strength:g})",
        f"--sampler NAME (default {s.default_sampler}) — {', '.join(sampler_names())}; "
        "snake_case works too (euler_a, dpmpp_2m_karras)",
        f"--model NAME — {models}",
        "",
        f"Limits: {s.max_queued_jobs_per_user} jobs waiting per person, prompts up to {s.max_prompt_chars} "
        f"characters, uploads up to {s.max_upload_bytes / 2**20:.0f} MiB.",
    ]
    if any(entry.kind == "tiny" for entry in ctx.registry):
        lines += ["", render.TINY_NOTE]
    return "\n".join(lines)


async def show_help(ctx: Context, request: Request, args: str) -> list[Reply]:
    return [Reply(help_text(ctx))]
