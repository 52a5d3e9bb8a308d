"""Commands about you and your jobs: /settings, /queue, /cancel, /history, /info."""

from __future__ import annotations

from datetime import datetime

from commands import render, training_text
from commands.context import Context
from commands.errors import UserError
from commands.numbers import job_number, quoted, read_int
from commands.options import SETTINGS_FLAGS, read_options, user_options
from commands.parser import parse_flags
from commands.types import Reply, Request
from commands.words import size_text
from generation.parameters import infotext
from generation.spec import TEXT_KINDS
from storage import outbox, queue, users
from storage.tables import Job, JobStatus, utcnow

HISTORY_DEFAULT, HISTORY_MAX = 10, 25
STATUS_ICONS = {"queued": "⏳", "running": "🎨", "succeeded": "✅", "failed": "❌", "cancelled": "🛑"}
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
}


async def settings(ctx: Context, request: Request, args: str) -> list[Reply]:
    """`/settings` shows your defaults; `/settings --steps 30 --sampler euler_a` sets them;
    `/settings reset [name]` clears all or one."""
    words = args.split()
    async with ctx.db.transaction() as session:
        user = await users.get_or_create(session, request.platform, request.user_id, request.user_name)
        stored = dict(user.settings)
        if words and words[0].lower() == "reset":
            names = [SETTINGS_FLAGS.get(w.lower().lstrip("-"), w.lower()) for w in words[1:]]
            unknown = [n for n in names if n not in SETTING_LABELS]
            if unknown:
                raise UserError(f"I can't reset `{unknown[0]}`. Settings: {', '.join(SETTING_LABELS)}.")
            stored = {k: v for k, v in stored.items() if names and k not in names}
            await users.save_settings(session, user, stored)
            return [Reply("Your settings are reset.\n" + _describe(ctx, stored))]
        if args.strip():
            flags = parse_flags(args, SETTINGS_FLAGS)
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
    return [Reply(_describe(ctx, stored))]


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
    }
    lines = ["Your defaults:"] + [f"• {SETTING_LABELS[k]}: {v}" for k, v in shown.items()]
    lines.append("Change with e.g. `/settings --steps 30 --sampler euler_a --no blurry`; `/settings reset` clears.")
    return "\n".join(lines)


async def queue_status(ctx: Context, request: Request, args: str) -> list[Reply]:
    async with ctx.db.transaction() as session:
        user = await users.get_or_create(session, request.platform, request.user_id, request.user_name)
        mine = await queue.user_jobs(session, user.id, 50, JobStatus.ACTIVE)
        running = await queue.running(session)
        lines = []
        for job in reversed(mine):
            position = await queue.position(session, job)
            lines.append(f"• {render.status_text(job, position)} — {render.job_summary(job)}")
        waiting_total = await queue.queued_count(session)
    head = "Your jobs:" if lines else "You have no jobs waiting or running."
    others = sum(1 for job in running if job.user_id != user.id)
    summary = f"Queue: {waiting_total} waiting, {len(running)} running ({others} for other people)."
    return [Reply("\n".join([head, *lines, summary]))]


async def cancel(ctx: Context, request: Request, args: str) -> list[Reply]:
    """`/cancel` stops your newest job; `/cancel 12` that one; `/cancel all` every one."""
    arg = args.strip().lower().lstrip("#")
    async with ctx.db.transaction() as session:
        user = await users.get_or_create(session, request.platform, request.user_id, request.user_name)
        if arg == "all":
            targets = await queue.user_jobs(session, user.id, 1000, JobStatus.ACTIVE)
        elif arg:
            job_id = job_number(arg)
            if job_id is None:
                raise UserError(f"`/cancel` takes a job number, or `all`; you wrote `{quoted(args)}`.")
            job = await _own_job(ctx, request, session, user.id, job_id)
            targets = [job]
        else:
            targets = (await queue.user_jobs(session, user.id, 1, JobStatus.ACTIVE))[:1]
        if not targets:
            return [Reply("You have no jobs waiting or running.")]
        lines = []
        for job in targets:
            outcome = await queue.request_cancel(session, job)
            lines.append(
                {
                    "cancelled": f"🛑 Job {job.id} cancelled.",
                    "requested": f"🛑 Job {job.id} is stopping after its current step"
                    + ("; what it learned so far is kept as its LoRA or embedding." if job.kind == "train" else "."),
                    "finished": f"Job {job.id} had already {job.status}.",
                }[outcome]
            )
    return [Reply("\n".join(lines))]


async def _own_job(ctx: Context, request: Request, session, user_id: int, job_id: int) -> Job:  # type: ignore[no-untyped-def]
    job = await queue.get(session, job_id)
    if job is None or (job.user_id != user_id and not ctx.is_admin(request)):
        raise UserError(f"I can't find job {job_id} among yours. `/history` lists them.")
    return job


async def history(ctx: Context, request: Request, args: str) -> list[Reply]:
    arg = args.strip()
    limit = read_int(arg) if arg else HISTORY_DEFAULT
    if limit is None or not 1 <= limit <= HISTORY_MAX:
        raise UserError(f"`/history` takes how many jobs to show, 1 to {HISTORY_MAX}; you wrote `{quoted(arg)}`.")
    async with ctx.db.transaction() as session:
        user = await users.get_or_create(session, request.platform, request.user_id, request.user_name)
        jobs = await queue.user_jobs(session, user.id, limit)
    if not jobs:
        return [Reply("You have no jobs yet. Try `/imagine a lighthouse at dusk`.")]
    now = utcnow()
    lines = ["Your last job:" if len(jobs) == 1 else f"Your last {len(jobs)} jobs:"]
    for job in jobs:
        drawn = ""
        if job.kind != "train" and (spec := render.spec_of(job)).kind not in TEXT_KINDS:
            drawn = f" ({spec.width}x{spec.height}, seed {spec.seed})"
        lines.append(
            f"• #{job.id} {STATUS_ICONS.get(job.status, '')} {job.status} · {_ago(now, job.created_at)} · {render.job_summary(job)}{drawn}"
        )
    return [Reply("\n".join(lines))]


def _ago(now: datetime, then: datetime) -> str:
    seconds = int((now - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def clip_files_line(job: Job) -> str:
    clip = dict((job.result or {}).get("clip") or {})
    if not clip:
        return "Clip: no files (made before clips were encoded)"
    sizes = " · ".join(f"{kind.upper()} {size_text(int(clip[f'{kind}_size']))}" for kind in ("mp4", "gif") if clip.get(f"{kind}_size"))
    loop = ", played forward then back" if clip.get("loop") else ""
    return f"Clip: {clip.get('frames')} frames at {clip.get('fps')} fps, {clip.get('width')}x{clip.get('height')}{loop} · {sizes} (`/frames {job.id}`)"


async def info(ctx: Context, request: Request, args: str) -> list[Reply]:
    """`/info 12`, or `/info` as a reply to one of the bot's messages: everything about a job."""
    arg = args.strip().lstrip("#")
    async with ctx.db.transaction() as session:
        user = await users.get_or_create(session, request.platform, request.user_id, request.user_name)
        job_id = job_number(arg) if arg else None
        if job_id is None and not arg and request.reply_to:
            ref = await outbox.find_ref(session, request.platform, request.chat_id, request.reply_to)
            job_id = ref.job_id if ref else None
        if job_id is None:
            raise UserError("Which job? Use `/info 12`, or reply `/info` to one of my pictures.")
        job = await _own_job(ctx, request, session, user.id, job_id)
        position = await queue.position(session, job)
    if job.kind == "train":
        return [Reply(training_text.info_text(job, render.status_text(job, position) if job.status in JobStatus.ACTIVE else None))]
    spec = render.spec_of(job)
    lines = [f"Job {job.id}: {STATUS_ICONS.get(job.status, '')} {job.status} ({spec.kind})"]
    if job.status in JobStatus.ACTIVE:
        lines.append(render.status_text(job, position))
    if job.parent_id:
        which = f", image {job.parent_output_index + 1}" if job.parent_output_index is not None else ""
        lines.append(f"From job {job.parent_id}{which}")
    lines.append(f"Attempts: {job.attempt} of {job.max_attempts}")
    if job.run_seconds is not None:
        lines.append(f"Ran for {job.run_seconds:.1f} s")
    if job.error:
        lines.append(f"Error: {job.error}")
    if spec.kind in TEXT_KINDS:
        if job.status == JobStatus.SUCCEEDED:
            lines.append("\n" + render.answer_text(job))
    elif job.outputs and spec.clip is not None:  # a clip: its files, and the parameters of its first frame
        lines.append(clip_files_line(job))
        lines.append(f"\nFrame 1 of {len(job.outputs)}:\n{job.outputs[0].parameters}")
    elif job.outputs:
        for output in job.outputs:
            lines.append(f"\nImage {output.index + 1}:\n{output.parameters}")
    else:
        lines.append("\n" + infotext(spec, spec.seed, job_id=job.id))
    return [Reply("\n".join(lines))]
