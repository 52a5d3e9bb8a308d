"""Clips in chat: the result (a video that plays inline, its first frame as the poster), its
buttons, and `/frames`.

Buttons under a clip (ids as in `commands.render`: stable, resolved through the message refs):
- Reroll: the same clip job with a new seed;
- Longer: the clip continued from its last frame (`ClipSpec.extend`): as many new frames as the
  clip drew, up to SDBOT_MAX_CLIP_FRAMES in all; a Deforum clip goes on along its schedules;
- Upscale 2x: every frame upscaled (esrgan when an upscaler is configured, else lanczos), the
  same clip at twice the size;
- Remix: the clip restyled by video2video with its own prompt and a new seed (a reply to the clip
  with a new prompt restyles it with that prompt).

`/frames 12 [png|gif|mp4]` (or `/frames` as a reply to a clip) sends the clip's frames as a ZIP of
PNGs (each with its parameters), or its GIF, or its MP4, as a document.
"""

from __future__ import annotations

import io
import zipfile

from commands import render, safety
from commands.animate import queue_video2video
from commands.clip_source import clip_info, clip_of_job, is_clip_job
from commands.context import Context
from commands.errors import UserError
from commands.numbers import job_number
from commands.offload import offload
from commands.options import ImagineOptions, new_seed
from commands.submit import queue_spec
from commands.types import DocumentFile, ImageFile, MessageTarget, Reply, Request, VideoFile
from generation.spec import GenerationSpec
from storage import outbox, queue, users
from storage.tables import Job, JobStatus

FRAME_FORMATS = ("png", "gif", "mp4")


def clip_reply(ctx: Context, job: Job) -> Reply:
    """A clip job's result: the MP4 (adapters fit it to their limit), the first frame as poster."""
    info = clip_info(job)
    frames = tuple(ctx.blobs.path(output.blob_key) for output in job.outputs)
    first = job.outputs[0]
    video = VideoFile(
        mp4=ctx.blobs.path(info["mp4"]),
        gif=ctx.blobs.path(info["gif"]) if info.get("gif") else None,
        width=int(info["width"]),
        height=int(info["height"]),
        fps=int(info["fps"]),
        frames=frames,
        loop=bool(info.get("loop")),
    )
    poster = ImageFile(frames[0], first.width, first.height, first.seed, 0)
    return Reply(
        render.result_text(job),
        kind="result",
        images=(poster,),
        video=video,
        actions=render.actions_for(job, "result", None),
        job_id=job.id,
        target=MessageTarget(job.id, None, "result"),
    )


async def press(ctx: Context, request: Request, job: Job, verb: str) -> list[Reply]:
    spec = render.spec_of(job)
    assert spec.clip is not None
    parent = (job.id, None)
    if verb == "reroll":
        return await queue_spec(ctx, request, spec.evolve(seed=new_seed()), parent=parent)
    if verb == "remix":
        return await queue_video2video(ctx, request, clip_of_job(job), ImagineOptions(), {})
    if verb == "longer":
        return await queue_spec(ctx, request, longer_spec(ctx, job, spec), parent=parent)
    if verb == "clipup":
        return await queue_spec(ctx, request, upscaled_spec(ctx, job, spec), parent=parent)
    raise UserError("That button isn't available any more.")


def longer_spec(ctx: Context, job: Job, spec: GenerationSpec) -> GenerationSpec:
    """The clip continued from its last frame. A video2video clip goes on as an animation of it
    (its source video has ended)."""
    assert spec.clip is not None
    so_far = tuple(output.blob_key for output in job.outputs)
    limit = ctx.settings.max_clip_frames
    adding = min(spec.clip.frames, limit - len(so_far))
    if adding < 1:
        raise UserError(f"This clip has {len(so_far)} frames, the most a clip may have here ({limit}).")
    kind = "deforum" if spec.kind == "deforum" else "animate"
    clip = spec.clip.evolve(frames=adding, source=so_far, extend=True)
    strength = spec.strength if spec.strength is not None else ctx.settings.video2video_strength
    return spec.evolve(kind=kind, clip=clip, strength=strength, operation="Longer")


def upscaled_spec(ctx: Context, job: Job, spec: GenerationSpec) -> GenerationSpec:
    assert spec.clip is not None
    s = ctx.settings
    width, height = spec.width * 2, spec.height * 2
    if width * height > s.max_upscale_pixels:
        raise UserError(
            f"Upscaling {spec.width}x{spec.height} by 2 gives {width}x{height}, over the limit of {s.max_upscale_pixels:,} pixels."
        )
    method = "esrgan" if s.upscalers and s.default_upscale_method in ("auto", "esrgan") else "lanczos"
    frames = tuple(output.blob_key for output in job.outputs)
    clip = spec.clip.evolve(frames=len(frames), source=frames, extend=False)
    return spec.evolve(
        kind="upscale",
        clip=clip,
        width=width,
        height=height,
        scale=2.0,
        upscale_method=method,
        upscaler=next(iter(s.upscalers)) if method == "esrgan" else None,
        strength=None,
        init_image=None,
        operation=f"Upscale 2x ({method})",
    )


async def frames_command(ctx: Context, request: Request, args: str) -> list[Reply]:
    """`/frames 12 [png|gif|mp4]`, or `/frames [png|gif|mp4]` as a reply to a clip."""
    numbers = [number for word in args.split() if (number := job_number(word)) is not None]
    formats = [word.lower() for word in args.split() if job_number(word) is None]
    if len(numbers) > 1 or len(formats) > 1 or (formats and formats[0] not in FRAME_FORMATS):
        raise UserError(f"`/frames` takes a job number and one of {', '.join(FRAME_FORMATS)} (png: a ZIP of its frames).")
    wanted = formats[0] if formats else "png"
    job = await _clip_job(ctx, request, numbers[0] if numbers else None)
    info = clip_info(job)
    if wanted == "png":
        key, size = await offload(_zip_frames, ctx, job)
        document = DocumentFile(ctx.blobs.path(key), f"sdbot-{job.id}-frames.zip", size)
        text = f"The {len(job.outputs)} frames of job {job.id}, as PNGs with their parameters."
    else:
        key = info.get(wanted)
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
            user = await users.get_or_create(session, request.platform, request.user_id, request.user_name)
            job = await queue.get(session, job_id)
            if job is not None and job.user_id != user.id and not ctx.is_admin(request):
                job = None
        if job is None:
            raise UserError(f"I can't find job {job_id} among yours. `/history` lists them.")
        if await safety.withheld(ctx, session, job, request.platform, request.chat_id):
            raise UserError(f"This chat's safety policy doesn't send job {job.id}'s files here.")
    if job.status != JobStatus.SUCCEEDED or not is_clip_job(job):
        raise UserError(f"Job {job.id} is no finished clip; `/frames` sends the frames of /animate, /video2video and /deforum.")
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
