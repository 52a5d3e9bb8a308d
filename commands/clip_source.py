"""The clip a request works on (/video2video, a reply to a clip): a video or GIF a person sent,
or one of the bot's clips, as frames stored as PNG blobs.

Where the clip comes from, first match wins (as for pictures, `commands.imagine.find_source`):
1. a video or GIF attached to the request;
2. the bot's clip the request replies to (its frames are the job's outputs; its settings are the
   base of a remix);
3. a video or GIF in the replied-to message that the adapter handed over.

An uploaded video is read here, in the chat process, within the limits: SDBOT_MAX_VIDEO_BYTES,
SDBOT_MAX_VIDEO_SECONDS, at most SDBOT_MAX_FRAMES frames taken at the clip's fps, each frame fitted
to SDBOT_MAX_CLIP_PIXELS. What was cut or scaled is said in the notes. Reading runs off the event
loop (`commands.offload`), and frames are scaled down as they are decoded: a small GIF of huge
frames stalls no one else's chat and never sits in memory at full size.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

from commands.context import Context
from commands.errors import UserError
from commands.offload import offload
from commands.options import InitImage
from commands.types import Attachment, Request
from generation.spec import GenerationSpec
from storage import outbox, queue
from storage.tables import Job, JobStatus

VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".m4v", ".mkv", ".gif")


@dataclass(frozen=True)
class ClipSource:
    frames: tuple[InitImage, ...]
    fps: float
    uploads: tuple[tuple[InitImage, int], ...] = ()  # new frame blobs and their sizes, to record with the job
    base: GenerationSpec | None = None  # the bot's clip being remixed
    parent: tuple[int, int | None] | None = None
    notes: tuple[str, ...] = field(default=())


def is_clip_job(job: Job) -> bool:
    return bool((job.result or {}).get("clip")) and job.kind not in ("train",)


def clip_info(job: Job) -> dict:  # type: ignore[type-arg]
    """What the worker stored of a clip job's files: mp4, gif, fps, width, height, frames, loop."""
    return dict((job.result or {}).get("clip") or {})


def first_video(attachments: tuple[Attachment, ...]) -> Attachment | None:
    for attachment in attachments:
        kind = (attachment.content_type or "").lower()
        if kind.startswith("video/") or kind == "image/gif" or attachment.filename.lower().endswith(VIDEO_SUFFIXES):
            return attachment
    return None


async def replied_clip(ctx: Context, request: Request) -> Job | None:
    """The bot's finished clip the request replies to, if it replies to one."""
    if not request.reply_to:
        return None
    async with ctx.db.transaction() as session:
        ref = await outbox.find_ref(session, request.platform, request.chat_id, request.reply_to)
        job = await queue.get(session, ref.job_id) if ref is not None else None
    if job is None or job.status != JobStatus.SUCCEEDED or not is_clip_job(job):
        return None
    return job


def clip_of_job(job: Job) -> ClipSource:
    from commands.render import spec_of

    frames = tuple(InitImage(output.blob_key, output.width, output.height) for output in job.outputs)
    return ClipSource(frames, float(clip_info(job).get("fps") or 8), base=spec_of(job), parent=(job.id, None))


async def find_clip(ctx: Context, request: Request, *, fps: float | None, max_frames: int) -> ClipSource | None:
    """The clip of the request, read at `fps` (None: the clip's own rate) up to `max_frames`."""
    attachment = first_video(request.attachments)
    if attachment is not None:
        return await offload(read_upload, ctx, attachment, fps=fps, max_frames=max_frames)
    job = await replied_clip(ctx, request)
    if job is not None:
        return clip_of_job(job)
    attachment = first_video(request.reply_to_images)
    if attachment is not None:
        return await offload(read_upload, ctx, attachment, fps=fps, max_frames=max_frames)
    return None


def read_upload(ctx: Context, attachment: Attachment, *, fps: float | None, max_frames: int) -> ClipSource:
    """Read a person's video or GIF into PNG frame blobs of at most SDBOT_MAX_CLIP_PIXELS each,
    within the limits; UserError when it is not a video, or over the size or length limit.
    Blocking (decoding, PNG encoding, blob writes): handlers run it through `offload`."""
    from generation.animation.video import VideoError, probe, read_frames

    s = ctx.settings
    name = attachment.filename or "your file"
    try:
        info = probe(attachment.data, max_bytes=s.max_video_bytes)
        if info.seconds > s.max_video_seconds:
            raise UserError(
                f"`{name}` is {info.seconds:.1f} s long; I read videos up to {s.max_video_seconds:g} s. Trim it and send it again."
            )
        frames, rate = read_frames(attachment.data, max_frames=max_frames, fps=fps, max_pixels=s.max_clip_pixels)
    except VideoError as error:
        raise UserError(f"`{name}`: {error.message}") from None
    if not frames:
        raise UserError(f"`{name}` has no frames I can read. Send an MP4, WebM, MOV or GIF.")
    notes = []
    available = math.floor(info.seconds * rate + 1e-6) if info.seconds else len(frames)
    if available > len(frames):
        notes.append(
            f"Your video has about {available} frames at {rate:g} fps; I used the first {len(frames)} "
            f"({len(frames) / rate:.1f} s), the limit of one clip. Use a lower `--fps` to cover more of it."
        )
    width, height = fit_frame(info.width, info.height, s.max_clip_pixels)
    if (width, height) != (info.width, info.height):  # the frames read are scaled already: say the video's size
        notes.append(f"Frames are drawn at {width}x{height} (your video is {info.width}x{info.height}).")
    uploads = []
    for frame in frames:
        buffer = io.BytesIO()
        frame.convert("RGB").save(buffer, format="PNG")
        data = buffer.getvalue()
        uploads.append((InitImage(ctx.blobs.put(data, "png"), frame.width, frame.height), len(data)))
    return ClipSource(tuple(init for init, _ in uploads), rate, tuple(uploads), notes=tuple(notes))


def fit_frame(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """A frame's size for drawing: its proportions within `max_pixels`, sides multiples of 8."""
    scale = min(1.0, math.sqrt(max_pixels / (width * height)))
    fitted_w, fitted_h = max(8, int(width * scale) // 8 * 8), max(8, int(height * scale) // 8 * 8)
    while fitted_w * fitted_h > max_pixels:
        fitted_w, fitted_h = max(8, fitted_w - 8), max(8, fitted_h - 8)
    return fitted_w, fitted_h


def require_clip(source: ClipSource | None, command: str) -> ClipSource:
    if source is None:
        raise UserError(
            f"`{command}` restyles a clip: reply to a video, a GIF or one of my clips with it, or attach one (MP4, WebM, MOV or GIF)."
        )
    return source
