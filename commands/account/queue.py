"""/queue, /cancel and /history: your jobs in the queue, stopping them, and the ones you ran."""

from __future__ import annotations

from datetime import datetime

from commands.frame.context import Context
from commands.frame.errors import UserError
from commands.frame.numbers import job_number, quoted, read_int
from commands.frame.types import Reply, Request
from commands.jobs import job_view, render
from commands.jobs.admission import asker
from generation.spec import TEXT_KINDS
from storage import queue
from storage.tables import Job, JobStatus, utcnow

HISTORY_DEFAULT, HISTORY_MAX = 10, 25
STATUS_ICONS = {"queued": "⏳", "running": "🎨", "succeeded": "✅", "failed": "❌", "cancelled": "🛑"}


async def queue_status(ctx: Context, request: Request, args: str) -> list[Reply]:
    async with ctx.db.transaction() as session:
        user = await asker(session, request)
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
        user = await asker(session, request)
        if arg == "all":
            targets = await queue.user_jobs(session, user.id, 1000, JobStatus.ACTIVE)
        elif arg:
            job_id = job_number(arg)
            if job_id is None:
                raise UserError(f"`/cancel` takes a job number, or `all`; you wrote `{quoted(args)}`.")
            job = await own_job(ctx, request, session, user.id, job_id)
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


async def own_job(ctx: Context, request: Request, session, user_id: int, job_id: int) -> Job:  # type: ignore[no-untyped-def]
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
        user = await asker(session, request)
        jobs = await queue.user_jobs(session, user.id, limit)
    if not jobs:
        return [Reply("You have no jobs yet. Try `/imagine a lighthouse at dusk`.")]
    now = utcnow()
    lines = ["Your last job:" if len(jobs) == 1 else f"Your last {len(jobs)} jobs:"]
    for job in jobs:
        drawn = ""
        if job.kind != "train" and (spec := job_view.spec_of(job)).kind not in TEXT_KINDS:
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
