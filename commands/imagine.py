"""/imagine, remix by reply, and the image a request starts from.

Where the init image comes from, first match wins:
1. an image attached to the request (`/imagine ...` as a photo caption, or with an attachment);
2. the bot's image the request replies to (resolved through the message refs, so it works after
   a restart); the remix inherits that job's settings unless the user overrides them (a control
   map the bot showed is a plain picture: nothing to inherit);
3. an image in the replied-to message that the adapter handed over (a person's photo).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from commands.clip_source import is_clip_job
from commands.context import Context
from commands.errors import UserError
from commands.images import first_image
from commands.options import IMAGINE_FLAGS, ImagineOptions, InitImage, read_options
from commands.parser import parse_flags
from commands.render import image_base, maps_of
from commands.submit import store_upload, submit
from commands.types import Reply, Request
from generation.spec import GenerationSpec
from storage import outbox, queue
from storage.tables import JobStatus


@dataclass(frozen=True)
class Source:
    init: InitImage | None = None
    upload_size: int | None = None  # set when the init image is a new upload
    base: GenerationSpec | None = None  # the job being remixed
    parent: tuple[int, int | None] | None = None


async def imagine(ctx: Context, request: Request, args: str) -> list[Reply]:
    flags = parse_flags(args, IMAGINE_FLAGS)
    opts = read_options(flags.values, ctx.settings, ctx.registry, written=flags.written, prompt=flags.text, problems=flags.problems)
    return await _submit_with_source(ctx, request, opts)


# Typed option names (Discord's slash command) that differ from the text syntax's flag names.
STRUCTURED_NAMES = {"negative": "no", "aspect": "ar"}


async def imagine_structured(ctx: Context, request: Request, options: dict[str, Any]) -> list[Reply]:
    """The same command from typed options (Discord): the same checks, with messages that name
    the options as the user saw them (`steps: 500`, not `--steps 500`). `--flags` written in the
    prompt work too, as in the text syntax; the same option given both ways is an error."""
    flags = parse_flags(str(options.get("prompt") or ""), IMAGINE_FLAGS)
    raw: dict[str, Any] = dict(flags.values)
    written: dict[str, str] = dict(flags.written)
    problems = list(flags.problems)
    for key, value in options.items():
        if key in ("command", "prompt"):
            continue
        canonical = STRUCTURED_NAMES.get(key, key)
        if canonical in raw:
            problems.append(f"`{key}:` and `{written[canonical]}` in the prompt say the same thing; keep one.")
            continue
        raw[canonical] = value
        written[canonical] = f"{key}:"
    opts = read_options(raw, ctx.settings, ctx.registry, written=written, prompt=flags.text, problems=problems)
    return await _submit_with_source(ctx, request, opts)


async def _submit_with_source(ctx: Context, request: Request, opts: ImagineOptions) -> list[Reply]:
    source = await find_source(ctx, request)
    return await submit(ctx, request, opts, init=source.init, upload_size=source.upload_size, base=source.base, parent=source.parent)


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
    assert request.reply_to is not None
    async with ctx.db.transaction() as session:
        ref = await outbox.find_ref(session, request.platform, request.chat_id, request.reply_to)
        if ref is None:
            return None
        job = await queue.get(session, ref.job_id)
        if job is None:
            return None
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
            return Source(init=InitImage(picture["blob"], picture["width"], picture["height"]), parent=(job.id, None))
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
