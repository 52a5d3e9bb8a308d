"""/info: everything about one job (`/info 12`, or `/info` as a reply to one of the bot's messages)."""

from __future__ import annotations

from commands.account.queue import STATUS_ICONS, own_job
from commands.frame.context import Context
from commands.frame.errors import UserError
from commands.frame.numbers import job_number
from commands.frame.types import Reply, Request
from commands.frame.words import size_text
from commands.jobs import job_view, render, training_text
from commands.jobs.admission import asker
from commands.jobs.job_view import clip_of
from generation.parameters import infotext
from generation.spec import TEXT_KINDS
from storage import outbox, queue
from storage.tables import Job, JobStatus


def clip_files_line(job: Job) -> str:
    clip = clip_of(job)
    if clip is None:
        return "Clip: no files (made before clips were encoded)"
    sizes = f"MP4 {size_text(clip.mp4_size)} · GIF {size_text(clip.gif_size)}"
    loop = ", played forward then back" if clip.loop else ""
    return f"Clip: {clip.frames} frames at {clip.fps} fps, {clip.width}x{clip.height}{loop} · {sizes} (`/frames {job.id}`)"


async def info(ctx: Context, request: Request, args: str) -> list[Reply]:
    """`/info 12`, or `/info` as a reply to one of the bot's messages: everything about a job."""
    arg = args.strip().lstrip("#")
    async with ctx.db.transaction() as session:
        user = await asker(session, request)
        job_id = job_number(arg) if arg else None
        if job_id is None and not arg and request.reply_to:
            ref = await outbox.find_ref(session, request.platform, request.chat_id, request.reply_to)
            job_id = ref.job_id if ref else None
        if job_id is None:
            raise UserError("Which job? Use `/info 12`, or reply `/info` to one of my pictures.")
        job = await own_job(ctx, request, session, user.id, job_id)
        position = await queue.position(session, job)
    if job.kind == "train":
        return [Reply(training_text.info_text(job, render.status_text(job, position) if job.status in JobStatus.ACTIVE else None))]
    spec = job_view.spec_of(job)
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
