"""/frames: a clip's frames as a ZIP of PNGs (each with its parameters), or its GIF or MP4, as a
document.

    /frames 12 png
    /frames gif          as a reply to a clip
"""

from __future__ import annotations

import io
import zipfile

from commands.clips.results import FRAME_FORMATS
from commands.frame.context import Context
from commands.frame.errors import UserError
from commands.frame.numbers import job_number
from commands.frame.offload import offload
from commands.frame.types import DocumentFile, Reply, Request
from commands.jobs import safety
from commands.jobs.admission import asker
from commands.jobs.job_view import clip_of, is_clip_job
from storage import outbox, queue
from storage.tables import Job, JobStatus


async def frames_command(ctx: Context, request: Request, args: str) -> list[Reply]:
    """`/frames 12 [png|gif|mp4]`, or `/frames [png|gif|mp4]` as a reply to a clip."""
    numbers = [number for word in args.split() if (number := job_number(word)) is not None]
    formats = [word.lower() for word in args.split() if job_number(word) is None]
    if len(numbers) > 1 or len(formats) > 1 or (formats and formats[0] not in FRAME_FORMATS):
        raise UserError(f"`/frames` takes a job number and one of {', '.join(FRAME_FORMATS)} (png: a ZIP of its frames).")
    wanted = formats[0] if formats else "png"
    job = await _clip_job(ctx, request, numbers[0] if numbers else None)
    info = clip_of(job)
    assert info is not None  # _clip_job took only clips
    if wanted == "png":
        key, size = await offload(_zip_frames, ctx, job)
        document = DocumentFile(ctx.blobs.path(key), f"sdbot-{job.id}-frames.zip", size)
        text = f"The {len(job.outputs)} frames of job {job.id}, as PNGs with their parameters."
    else:
        key = {"mp4": info.mp4, "gif": info.gif}[wanted]
        if not key or not ctx.blobs.exists(key):
            raise UserError(f"I don't have the {wanted.upper()} of job {job.id} any more.")
        path = ctx.blobs.path(key)
        document = DocumentFile(path, f"sdbot-{job.id}.{wanted}", path.stat().st_size)
        text = f"The {wanted.upper()} of job {job.id}."
    return [Reply(text, documents=(document,), job_id=job.id)]


async def _clip_job(ctx: Context, request: Request, job_id: int | None) -> Job:
    async with ctx.db.transaction() as session:
        if job_id is None:
            ref = await outbox.find_ref(session, request.platform, request.chat_id, request.reply_to) if request.reply_to else None
            if ref is None:
                raise UserError("Which clip? Use `/frames 12`, or reply `/frames` to one of my clips.")
            job = await queue.get(session, ref.job_id)  # a clip shown in this chat: anyone here may have its frames
        else:
            user = await asker(session, request)
            job = await queue.get(session, job_id)
            if job is not None and job.user_id != user.id and not ctx.is_admin(request):
                job = None
        if job is None:
            raise UserError(f"I can't find job {job_id} among yours. `/history` lists them.")
        if await safety.withheld(ctx, session, job, request.platform, request.chat_id):
            raise UserError(f"This chat's safety policy doesn't send job {job.id}'s files here.")
    if job.status != JobStatus.SUCCEEDED or not is_clip_job(job):
        raise UserError(f"Job {job.id} is no finished clip; `/frames` sends the frames of /video, /animate, /video2video and /deforum.")
    return job


def _zip_frames(ctx: Context, job: Job) -> tuple[str, int]:
    """The clip's frames as a ZIP blob: its key and size. Blocking (reads and writes every frame's
    file): run it through `offload`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:  # PNGs are compressed already
        for output in job.outputs:
            archive.write(ctx.blobs.path(output.blob_key), f"sdbot-{job.id}-frame{output.index + 1:03d}.png")
    data = buffer.getvalue()
    return ctx.blobs.put(data, "zip"), len(data)
