"""/admin: what admins need to run the bot (admins only).

    /admin role …     people's roles; /admin audit …: the audit log; /admin review …: what the
                      safety policy withheld (commands.people.admin_people)
    /admin status     the workers (host, GPU, models they serve, the one loaded, what they draw,
                      when each was last seen), the queue's length by model, the oldest waiting
                      job, and models no running worker serves (their jobs wait until one does)

Workers renew their row in the roll call every few seconds (storage.workers); a row not renewed
for `LIVE_WITHIN` is shown as not responding: that worker died or hangs, and its jobs come back
to the queue when their leases run out.
"""

from __future__ import annotations

from datetime import datetime

from commands.frame.context import Context
from commands.frame.errors import UserError
from commands.frame.types import Reply, Request
from commands.people.admin_people import audit_command, review_command, role_command
from storage import workers
from storage.tables import WorkerRow, utcnow

USAGE = (
    "`/admin status`: workers, their models, the queue and its oldest waiting job; `/admin role WHO [ROLE]`: "
    "someone's role; `/admin audit [N] [ACTION]`: the audit log; `/admin review [JOB]`: what the safety policy withheld."
)


async def admin_command(ctx: Context, request: Request, args: str) -> list[Reply]:
    if not ctx.is_admin(request):
        raise UserError("`/admin` is for the bot's admins (SDBOT_ADMIN_IDS, or `/admin role`). `/queue` shows your own jobs.")
    verb, _, rest = args.strip().partition(" ")
    verb = verb.lower()
    if verb == "role":
        return await role_command(ctx, request, rest)
    if verb == "audit":
        return await audit_command(ctx, request, rest)
    if verb == "review":
        return await review_command(ctx, request, rest)
    if verb == "status":
        return [Reply(await status_text(ctx), ephemeral=True)]
    if not verb:
        raise UserError(f"What should I show? {USAGE}")
    raise UserError(f"I don't know `/admin {verb}`. {USAGE}")


async def status_text(ctx: Context) -> str:
    async with ctx.db.transaction() as session:
        roll = await workers.roll(session)
        summary = await workers.queue_summary(session)
    now = utcnow()
    live = [row for row in roll if now - row.seen_at <= workers.LIVE_WITHIN]
    lines = [f"Workers: {len(live)} running" + (f", {len(roll) - len(live)} not responding" if len(roll) > len(live) else "")]
    lines += [_worker_line(row, now, row in live) for row in roll] or ["• none has announced itself yet"]
    lines.append(f"Queue: {summary.queued} waiting, {summary.running} running")
    if summary.queued_by_model:
        lines.append("• by model: " + ", ".join(f"{model} {count}" for model, count in sorted(summary.queued_by_model.items())))
    if summary.oldest_id is not None and summary.oldest_created_at is not None:
        lines.append(f"• oldest waiting: job {summary.oldest_id} ({summary.oldest_model}), {_age(now, summary.oldest_created_at)} ago")
    unserved = sorted(model for model in summary.queued_by_model if not any(_serves(row, model) for row in live))
    if unserved:
        lines.append(
            "⚠ No running worker takes jobs for "
            + ", ".join(f"`{m}`" for m in unserved)
            + ": they wait until one does (start one with `run_bot.py worker`, or without `--models`)."
        )
    return "\n".join(lines)


def _serves(row: WorkerRow, model: str) -> bool:
    return not row.models or model in row.models


def _worker_line(row: WorkerRow, now: datetime, live: bool) -> str:
    parts = [f"• {row.owner}"]
    if row.gpu is not None:
        parts.append(f"GPU {row.gpu}")
    parts.append("models: " + (", ".join(row.models) if row.models else "any"))
    parts.append(f"loaded: {row.loaded_model or 'none'}")
    parts.append(f"drawing job {', '.join(map(str, row.jobs))}" if row.jobs else "idle")
    seen = f"seen {_age(now, row.seen_at)} ago"
    parts.append(seen if live else f"NOT RESPONDING, {seen}")
    return " — ".join(parts)


def _age(now: datetime, then: datetime) -> str:
    seconds = max(0, int((now - then).total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
