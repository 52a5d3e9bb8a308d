"""/me: who you are here (your role, your linked identities) and what your quotas leave you,
with when each refills."""

from __future__ import annotations

from datetime import timedelta

from commands.frame.context import Context
from commands.frame.errors import UserError
from commands.frame.types import Reply, Request
from commands.frame.words import size_text
from commands.jobs.admission import MINUTE, amount_text, asker, clock_text, minute_frees_at, seconds_text
from commands.people.linking import identity_text
from config.roles import RoleLimits
from storage import assets, queue, training, usage, users
from storage.tables import utcnow

ROLE_WORDS = {
    "admin": "admin (no limits)",
    "trusted": "trusted",
    "default": "default",
    "banned": "banned",
}


async def me_command(ctx: Context, request: Request, args: str) -> list[Reply]:
    if args.strip():
        raise UserError("`/me` takes nothing: it shows your role, your linked accounts and your quotas.")
    limits: RoleLimits = ctx.limits(request)
    now = utcnow()
    async with ctx.db.transaction() as session:
        account = await asker(session, request)
        everyone = await users.identities(session, account.id)
        active = await queue.active_count(session, account.id)
        recent = await usage.jobs_since(session, account.id, now - MINUTE)
        gpu = await usage.gpu_use(session, account.id, now)
        steps = await training.steps_last_day(session, account.id)
        steps_back = await training.steps_back_at(session, account.id)
        stored = await assets.bytes_used(session, account.id)
    lines = [f"You: {identity_text(everyone[0])}"]
    if len(everyone) > 1:
        lines.append("Linked with: " + ", ".join(identity_text(row) for row in everyone[1:]) + " (`/unlink` undoes it)")
    else:
        lines.append("Linked with: nothing yet (`/link` joins your Discord and Telegram into one account)")
    lines.append(f"Role: {ROLE_WORDS.get(request.role or 'default', request.role)}")
    lines.append(_line("Jobs waiting or running", str(active), limits.queued_jobs))
    minute = _line("Jobs queued in the last minute", str(len(recent)), limits.jobs_per_minute)
    if limits.jobs_per_minute and len(recent) >= limits.jobs_per_minute:
        minute += f" — more in {seconds_text(minute_frees_at(recent, limits.jobs_per_minute) - now)}"
    lines.append(minute)
    quota = limits.gpu_seconds_per_day
    drawing = _line("Drawing time, last 24 h", amount_text(gpu.used), None if quota is None else amount_text(quota))
    if gpu.refunded:
        drawing += f" (failed jobs ran {amount_text(gpu.refunded)} more, not charged)"
    if quota is not None and gpu.charges:
        back = gpu.back_at(quota)
        if back is not None:
            drawing += f" — used up; it refills at {clock_text(back)} (in {seconds_text(back - now)})"
        else:
            first, seconds = gpu.charges[0]
            drawing += f" — the oldest {amount_text(seconds)} come back at {clock_text(first + timedelta(days=1))}"
    lines.append(drawing)
    training_line = _line("Training steps, last 24 h", str(steps), limits.train_steps_per_day)
    if steps and steps_back is not None and limits.train_steps_per_day is not None:
        training_line += f" — the oldest run's steps come back at {clock_text(steps_back)}"
    lines.append(training_line)
    kept = _line("LoRAs and embeddings", size_text(stored), None if limits.storage_bytes is None else size_text(limits.storage_bytes))
    lines.append(
        kept + (" — room comes back when you delete one" if limits.storage_bytes is not None and stored >= limits.storage_bytes else "")
    )
    return [Reply("\n".join(lines), ephemeral=True)]


def _line(label: str, used: str, limit: object | None) -> str:
    return f"• {label}: {used}" + (f" of {limit}" if limit is not None else " (no limit)")
