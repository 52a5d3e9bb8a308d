"""What a request starts from: the picture (`find_source`) or the clip (`find_clip`) it works on,
and the bot message it replies to (`replied`, looked up once per request).

Where the picture comes from, first match wins:
1. an image attached to the request (`/imagine ...` as a photo caption, or with an attachment);
2. the bot's image the request replies to (resolved through the message refs, so it works after
   a restart); the remix inherits that job's settings unless the user overrides them (a control
   map the bot showed is a plain picture: nothing to inherit);
3. an image in the replied-to message that the adapter handed over (a person's photo).

The clip (/video2video, a reply to a clip), as frames stored as PNG blobs, first match wins:
1. a video or GIF attached to the request;
2. the bot's clip the request replies to (its frames are the job's outputs; its settings are the
   base of a remix);
3. a video or GIF in the replied-to message that the adapter handed over.

An image reference's picture (`find_references`): `--sref` alone takes the request's picture as
`find_source` finds it (it is then the reference only, not also a picture to remix); `--sref NAME`
the pictures of a moodboard the asker may use (their own first, else a shared one); `--sref b3`
the bot's picture in the message with that id in this chat, found as a reply to it would be;
`--sref none` no style reference (not the person's default moodboard, nor a remixed picture's).
A person's default moodboard (/settings --moodboard) is the style reference of every drawing
that names none, where the model can draw references.

An uploaded video is read here, in the chat process, within the limits: SDBOT_MAX_VIDEO_BYTES,
SDBOT_MAX_VIDEO_SECONDS, at most SDBOT_MAX_FRAMES frames taken at the clip's fps, each frame fitted
to SDBOT_MAX_CLIP_PIXELS. What was cut or scaled is said in the notes. Reading runs off the event
loop (`commands.frame.offload`), and frames are scaled down as they are decoded: a small GIF of huge
frames stalls no one else's chat and never sits in memory at full size.
"""

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from commands.frame.context import Context
from commands.frame.errors import UserError
from commands.frame.images import first_image
from commands.frame.offload import offload
from commands.frame.types import Attachment, Request
from commands.jobs.admission import asker
from commands.jobs.job_view import clip_of, image_base, is_clip_job, maps_of, spec_of
from commands.jobs.options import NO_REFERENCE, ImagineOptions, InitImage
from commands.jobs.prompt_features import REFERENCE_FLAGS, Picked
from commands.jobs.submit import store_upload
from generation.assets.files import valid_asset_name
from generation.spec import GenerationSpec
from storage import assets, outbox, queue
from storage.tables import Asset, Job, JobStatus, MessageRef

MOODBOARD = "moodboard"  # the assets' kind of a moodboard (commands.library.moodboards)

VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".m4v", ".mkv", ".gif")


@dataclass(frozen=True)
class ClipSource:
    frames: tuple[InitImage, ...]
    fps: float
    uploads: tuple[tuple[InitImage, int], ...] = ()  # new frame blobs and their sizes, to record with the job
    base: GenerationSpec | None = None  # the bot's clip being remixed
    parent: tuple[int, int | None] | None = None
    notes: tuple[str, ...] = field(default=())


def first_video(attachments: tuple[Attachment, ...]) -> Attachment | None:
    for attachment in attachments:
        kind = (attachment.content_type or "").lower()
        if kind.startswith("video/") or kind == "image/gif" or attachment.filename.lower().endswith(VIDEO_SUFFIXES):
            return attachment
    return None


@dataclass(frozen=True)
class Replied:
    """The bot's message a request replies to (its ref: which of the job's pictures it shows)
    and the job behind it."""

    ref: MessageRef
    job: Job


async def replied(ctx: Context, request: Request) -> Replied | None:
    """The bot message the request replies to and its job, or None (not a reply, or not to one of
    ours). Looked up once per request: `/imagine` as a reply asks whether it is a clip, then the
    picture code asks for the picture, and both read this one lookup."""
    if not request.reply_to:
        return None
    if "replied" not in request.lookups:
        async with ctx.db.transaction() as session:
            ref = await outbox.find_ref(session, request.platform, request.chat_id, request.reply_to)
            job = await queue.get(session, ref.job_id) if ref is not None else None
        request.lookups["replied"] = Replied(ref, job) if ref is not None and job is not None else None
    return request.lookups["replied"]  # type: ignore[no-any-return]


async def replied_clip(ctx: Context, request: Request) -> Job | None:
    """The bot's finished clip the request replies to, if it replies to one."""
    found = await replied(ctx, request)
    if found is None or found.job.status != JobStatus.SUCCEEDED or not is_clip_job(found.job):
        return None
    return found.job


def clip_of_job(job: Job) -> ClipSource:
    frames = tuple(InitImage(output.blob_key, output.width, output.height) for output in job.outputs)
    return ClipSource(frames, float(clip.fps if (clip := clip_of(job)) is not None else 8), base=spec_of(job), parent=(job.id, None))


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


@dataclass(frozen=True)
class Source:
    init: InitImage | None = None
    upload_size: int | None = None  # set when the init image is a new upload
    base: GenerationSpec | None = None  # the job being remixed
    parent: tuple[int, int | None] | None = None


async def find_source(ctx: Context, request: Request) -> Source:
    attachment = first_image(request.attachments)
    if attachment is not None:
        init, size = await store_upload(ctx, attachment)
        return Source(init, size)
    if request.reply_to:
        source = await _from_bot_message(ctx, request)
        if source is not None:
            return source
    attachment = first_image(request.reply_to_images)
    if attachment is not None:
        init, size = await store_upload(ctx, attachment)
        return Source(init, size)
    return Source()


async def _from_bot_message(ctx: Context, request: Request) -> Source | None:
    found = await replied(ctx, request)
    if found is None:
        return None
    ref, job = found.ref, found.job
    if job.status in JobStatus.ACTIVE:
        raise UserError(f"Job {job.id} isn't finished yet. Wait for its picture, then reply to that.")
    if job.status != JobStatus.SUCCEEDED or not job.outputs:
        return None  # a failure or cancellation note: nothing to remix, treat as plain text
    if is_clip_job(job):
        raise UserError(
            f"Job {job.id} is a clip. Reply to it with a prompt (or `/video2video <prompt>`) to restyle it, press its "
            "buttons, or get its frames as pictures with `/frames`."
        )
    if ref.role == "map":  # a control map: a picture of its own, not a remix of the job
        maps = maps_of(job)
        if ref.output_index is None or ref.output_index >= len(maps):
            return None
        picture = maps[ref.output_index]
        return Source(init=InitImage(picture.blob, picture.width, picture.height), parent=(job.id, None))
    index = ref.output_index
    if index is None:
        if len(job.outputs) > 1:
            count = len(job.outputs)
            raise UserError(f"That message has {count} images. Press U1–U{count} to pick one, then reply to it.")
        index = 0
    output = job.outputs[index]
    init = InitImage(output.blob_key, output.width, output.height)
    # A remix of one picture draws one unless `--n` says otherwise, whatever its job drew.
    base = image_base(job, index).evolve(n=1)
    return Source(init=init, base=base, parent=(job.id, index))


def takes_request_picture(opts: ImagineOptions) -> bool:
    """Whether a reference is the request's own picture (`--sref` / `--oref` alone), which then
    is not also the picture to remix."""
    return opts.sref == "" or opts.oref == ""


async def find_references(ctx: Context, request: Request, opts: ImagineOptions) -> list[Picked]:
    """The pictures `--sref` and `--oref` name (the request's own picture, a moodboard, or a message
    id: module docstring), and the person's default moodboard as the style reference where they set
    one and gave no `--sref`; UserError when one is missing or not a picture."""
    asked = {kind: getattr(opts, flag) for kind, (flag, _) in REFERENCE_FLAGS.items() if getattr(opts, flag) not in (None, NO_REFERENCE)}
    boards, default = await _moodboards(ctx, request, [value for value in asked.values() if value], default=opts.sref is None)
    picked = []
    for kind, value in asked.items():
        flag = REFERENCE_FLAGS[kind][0]
        if value in boards:
            name, pictures = boards[value]
            picked.append(Picked(kind, pictures, board=name))
            continue
        if value:
            try:
                source = await picture_in_message(ctx, request, value, f"--{flag}")
            except UserError:
                if not valid_asset_name(value.lower()):
                    raise
                raise UserError(
                    f"`--{flag} {value}`: I know no moodboard `{value.lower()}` of yours or shared (`/moodboards` lists them), "
                    f"and no message `{value}` with my picture in this chat."
                ) from None
        else:
            source = await find_source(ctx, request)
            if source.init is None:
                raise UserError(
                    f"`--{flag}` needs a picture: reply to one with your prompt, attach one, give the id of a message "
                    f"with my picture (e.g. `--{flag} b3`), or the name of one of your moodboards."
                )
        assert source.init is not None
        picked.append(Picked(kind, ((source.init, source.upload_size),)))
    if default is not None:
        picked.append(Picked("style", default[1], board=default[0], default=True))
    return picked


Board = tuple[str, tuple[tuple[InitImage, None], ...]]  # a moodboard's name and pictures


async def _moodboards(ctx: Context, request: Request, names: Sequence[str], *, default: bool) -> tuple[dict[str, Board], Board | None]:
    """In one transaction: the moodboards among `names` as the asker sees them (their own, else a
    shared one), and, with `default`, their default moodboard (/settings --moodboard), None when
    none is set or it was deleted or unshared since (a default that no longer exists is left out)."""
    async with ctx.db.transaction() as session:
        user = await asker(session, request)
        found = {}
        for name in names:
            board = await assets.find_usable(session, user.id, MOODBOARD, name) if valid_asset_name(name.lower()) else None
            if board is not None:
                found[name] = (board.name, board_pictures(board))
        chosen = user.settings.get("moodboard") if default else None
        fallback = await assets.find_usable(session, user.id, MOODBOARD, chosen) if chosen else None
        return found, (fallback.name, board_pictures(fallback)) if fallback is not None else None


async def picture_in_message(ctx: Context, request: Request, message_id: str, what: str) -> Source:
    """The bot's picture in the message `message_id` of this chat, found as a reply to it would be
    (without the request's own pictures); UserError when there is none."""
    bare = dataclasses.replace(request, reply_to=message_id, attachments=(), reply_to_images=(), lookups={})
    source = await find_source(ctx, bare)
    if source.init is None:
        said = f"{what} {message_id}".strip()
        raise UserError(f"`{said}`: I find no picture of mine in a message `{message_id}` in this chat. Give the id of one.")
    return source


async def find_pictures(
    ctx: Context, request: Request, ids: Sequence[str], *, most: int, what: str, ids_flag: str = "--images"
) -> list[tuple[InitImage, int | None]]:
    """Several pictures for one request (/blend, /moodboard save): the picture replied to, each
    attached one, then the bot's pictures in the messages `ids` names, each with its PNG size when
    it is a new upload (stored here; recorded by the caller's transaction). More than `most` is
    refused before any upload is read."""
    replied = await find_source(ctx, dataclasses.replace(request, attachments=())) if request.reply_to else Source()
    count = len(request.attachments) + len(ids) + (replied.init is not None)
    if count > most:
        raise UserError(f"{what} takes at most {most} pictures; you gave {count}.")
    found: list[tuple[InitImage, int | None]] = [(replied.init, replied.upload_size)] if replied.init is not None else []
    for attachment in request.attachments:
        found.append(await store_upload(ctx, attachment))
    for message_id in ids:
        source = await picture_in_message(ctx, request, message_id, ids_flag)
        assert source.init is not None
        found.append((source.init, None))
    return found


def board_pictures(board: Asset) -> tuple[tuple[InitImage, None], ...]:
    """A moodboard's pictures (stored in its row's `info`: commands.library.moodboards)."""
    return tuple((InitImage(p["key"], p["width"], p["height"]), None) for p in board.info["pictures"])
